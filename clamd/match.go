package clamd

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// Limits of the MIME walk, so that hostile input costs bounded work.
const (
	// maxMIMEDepth is how deeply nested multiparts and messages are followed.
	maxMIMEDepth = 8
	// maxMIMEParts is how many entities one payload may make the walk visit.
	maxMIMEParts = 512
	// matchWindow is how many decoded bytes are searched at a time.
	matchWindow = 16 << 10
)

// Matcher reports the first signature found in a payload. It looks at the raw
// bytes and, when the payload is a MIME message with base64 or
// quoted-printable encoded parts, at the decoded parts too.
//
// A Matcher is immutable after [NewMatcher] and safe for concurrent use. The
// zero Matcher matches nothing.
type Matcher struct {
	sigs   []Signature
	maxLen int
}

// NewMatcher returns a Matcher for sigs. It copies sigs, so later changes to
// them do not affect the Matcher. Signatures with an empty Pattern are
// ignored. The order of sigs is the order Match tries them in.
func NewMatcher(sigs []Signature) *Matcher {
	m := &Matcher{}
	for _, s := range sigs {
		if len(s.Pattern) == 0 {
			continue
		}
		m.sigs = append(m.sigs, Signature{
			Name:    sanitizeName(s.Name),
			Pattern: bytes.Clone(s.Pattern),
		})
		m.maxLen = max(m.maxLen, len(s.Pattern))
	}
	return m
}

// sanitizeName replaces the bytes that would break clamd reply framing.
func sanitizeName(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case 0, '\r', '\n':
			return '_'
		}
		return r
	}, name)
}

// Match reports the name of the first signature (in the order given to
// [NewMatcher]) found in payload, first in the raw bytes, then in the decoded
// base64 and quoted-printable parts of a MIME message. Malformed MIME is
// tolerated, never a panic: whatever can be decoded is searched. The MIME walk
// is bounded in depth and part count, and holds at most one decoded attached
// message in memory (never larger than payload).
//
// The MIME walk only runs when the raw bytes carry a Content-Transfer-Encoding
// header naming base64 or quoted-printable, so scanning a plain message does
// not allocate.
func (m *Matcher) Match(payload []byte) (signature string, found bool) {
	if m == nil || len(m.sigs) == 0 {
		return "", false
	}
	if name, ok := m.matchBytes(payload); ok {
		return name, true
	}
	if !hasEncodedContent(payload) {
		return "", false
	}
	w := walker{m: m, budget: maxMIMEParts}
	return w.message(bytes.NewReader(skipMboxFrom(payload)), 0)
}

// matchBytes searches b for every signature, in order.
func (m *Matcher) matchBytes(b []byte) (string, bool) {
	for i := range m.sigs {
		if bytes.Contains(b, m.sigs[i].Pattern) {
			return m.sigs[i].Name, true
		}
	}
	return "", false
}

// matchReader searches everything r yields, a window at a time, keeping
// enough of the previous window that a pattern split across reads is found.
func (m *Matcher) matchReader(r io.Reader) (string, bool) {
	keepMax := m.maxLen - 1
	buf := make([]byte, matchWindow+keepMax)
	keep := 0
	for {
		n, err := r.Read(buf[keep:])
		total := keep + n
		if n > 0 {
			if name, ok := m.matchBytes(buf[:total]); ok {
				return name, true
			}
		}
		if err != nil {
			return "", false
		}
		keep = min(total, keepMax)
		copy(buf, buf[total-keep:total])
	}
}

// walker walks the MIME structure of one payload.
type walker struct {
	m      *Matcher
	budget int // entities left to visit
}

// message parses an RFC 5322 message from r and walks its body.
func (w *walker) message(r io.Reader, depth int) (string, bool) {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return "", false
	}
	return w.entity(textproto.MIMEHeader(msg.Header), msg.Body, depth)
}

// entity searches the decoded content of one MIME entity and of everything
// nested in it. Content without a transfer encoding is not searched again:
// its bytes are part of the raw payload, which Match has already searched.
func (w *walker) entity(h textproto.MIMEHeader, body io.Reader, depth int) (string, bool) {
	if depth > maxMIMEDepth || w.budget <= 0 {
		return "", false
	}
	w.budget--

	// An invalid Content-Type still yields its media type when only a
	// parameter is broken; anything else is treated as opaque content.
	mediaType, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	dec := decoder(h.Get("Content-Transfer-Encoding"), body)

	switch {
	case strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "":
		if dec != nil { // not allowed by RFC 2045, but seen in the wild
			body = dec
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			// NextRawPart, unlike NextPart, leaves quoted-printable
			// parts encoded, so every encoding is handled alike here.
			p, err := mr.NextRawPart()
			if err != nil {
				return "", false
			}
			if name, ok := w.entity(textproto.MIMEHeader(p.Header), p, depth+1); ok {
				return name, true
			}
		}
	case mediaType == "message/rfc822" || mediaType == "message/global":
		if dec == nil {
			return w.message(body, depth+1)
		}
		// The decoded message is both content to search and a message
		// that may have encoded parts of its own. Decoded content is never
		// larger than its encoding, so this is bounded by the payload.
		data, _ := io.ReadAll(dec)
		if name, ok := w.m.matchBytes(data); ok {
			return name, true
		}
		if !hasEncodedContent(data) {
			return "", false
		}
		return w.message(bytes.NewReader(data), depth+1)
	case dec != nil:
		return w.m.matchReader(dec)
	}
	return "", false
}

// decoder returns a reader decoding body per the Content-Transfer-Encoding
// cte, or nil when the content is not encoded (7bit, 8bit, binary, unknown).
func decoder(cte string, body io.Reader) io.Reader {
	cte = strings.TrimSpace(cte)
	switch {
	case strings.EqualFold(cte, "base64"):
		return base64.NewDecoder(base64.StdEncoding, base64Filter{r: body})
	case strings.EqualFold(cte, "quoted-printable"):
		return quotedprintable.NewReader(body)
	}
	return nil
}

// base64Filter drops every byte outside the base64 alphabet (line breaks,
// spaces, stray garbage) so that sloppy encoders still decode.
type base64Filter struct{ r io.Reader }

// Read implements io.Reader.
func (f base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if isBase64Byte(c) {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil || n == 0 {
			return j, err
		}
	}
}

// isBase64Byte reports whether c belongs to the standard base64 alphabet,
// padding included.
func isBase64Byte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '='
}

// skipMboxFrom drops a leading mbox "From " separator line, which is not a
// header and would stop the header parser.
func skipMboxFrom(p []byte) []byte {
	if !bytes.HasPrefix(p, []byte("From ")) {
		return p
	}
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return p[i+1:]
	}
	return nil
}

// hasEncodedContent reports whether p contains a Content-Transfer-Encoding
// header (any case) whose value is base64 or quoted-printable. It does not
// allocate. It looks for the first hyphen of the name with the vectorized
// IndexByte, which is much faster on text than a case-folding scan.
func hasEncodedContent(p []byte) bool {
	const before, after = "content", "-transfer-encoding"
	for i := 0; i < len(p); i++ {
		j := bytes.IndexByte(p[i:], '-')
		if j < 0 {
			return false
		}
		i += j
		if i < len(before) || i+len(after) > len(p) ||
			!equalFoldASCII(p[i-len(before):i], before) || !equalFoldASCII(p[i:i+len(after)], after) {
			continue
		}
		if v, ok := headerValue(p[i+len(after):]); ok &&
			(hasPrefixFold(v, "base64") || hasPrefixFold(v, "quoted-printable")) {
			return true
		}
	}
	return false
}

// headerValue returns what follows the colon after a header name in p,
// skipping white space (including folding) and an opening quote.
func headerValue(p []byte) ([]byte, bool) {
	p = trimLeftWS(p)
	if len(p) == 0 || p[0] != ':' {
		return nil, false
	}
	p = trimLeftWS(p[1:])
	if len(p) > 0 && p[0] == '"' {
		p = p[1:]
	}
	return p, true
}

// trimLeftWS drops leading spaces, tabs, CRs and LFs.
func trimLeftWS(p []byte) []byte {
	for len(p) > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n') {
		p = p[1:]
	}
	return p
}

// equalFoldASCII reports whether b equals the lower-case ASCII string lower,
// ignoring ASCII case.
func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether b starts with the lower-case ASCII string
// lower, ignoring ASCII case.
func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalFoldASCII(b[:len(lower)], lower)
}
