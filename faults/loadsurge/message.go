package loadsurge

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
)

// HeaderID is the header every generated message carries, with the value
// "<run ID>-<sequence number>", so that what a server received can be
// compared with what the generator saw accepted. Its Message-ID is
// "<run ID>-<sequence number>@<the sender's domain>". Within an experiment
// run the run ID is "<the run's ID>-<the step's ID>" ([RunIDOf]), so the
// ids of two runs never meet.
const HeaderID = "X-Mailchaos-Id"

// SizeRange is a message size in bytes, headers included: fixed when Min ==
// Max, else drawn uniformly from [Min, Max] for each message.
type SizeRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// maxMessageSize bounds SizeRange.Max (64 MiB): the generator keeps one
// filler buffer of that size.
const maxMessageSize = 64 << 20

// ParseSizeRange parses "4KB" (fixed) or "1KB-64KB" (uniform range), with the
// units of [faults.ParseSize].
func ParseSizeRange(v string) (SizeRange, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	min, err := faults.ParseSize(lo)
	if err != nil {
		return SizeRange{}, fmt.Errorf("%q is not a size", lo)
	}
	max := min
	if isRange {
		if max, err = faults.ParseSize(hi); err != nil {
			return SizeRange{}, fmt.Errorf("%q is not a size", hi)
		}
	}
	r := SizeRange{Min: int(min), Max: int(max)}
	return r, r.check()
}

func (r SizeRange) check() error {
	switch {
	case r.Min < 1:
		return fmt.Errorf("size must be at least 1 byte")
	case r.Max < r.Min:
		return fmt.Errorf("range %d-%d is reversed", r.Min, r.Max)
	case r.Max > maxMessageSize:
		return fmt.Errorf("size must be at most 64MiB")
	}
	return nil
}

// String returns "4000" or "1000-64000".
func (r SizeRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

// boundary separates the parts of an infected message; the filler never
// contains it.
const boundary = "mailchaos-load-boundary"

// Parts of an infected message around its text part, the same for every
// message.
const (
	infectedType = "multipart/mixed; boundary=\"" + boundary + "\""
	infectedHead = "This is a multi-part message in MIME format.\r\n" +
		"--" + boundary + "\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	infectedTailFmt = "--" + boundary + "\r\n" +
		"Content-Type: application/octet-stream; name=\"eicar.com\"\r\n" +
		"Content-Disposition: attachment; filename=\"eicar.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" +
		"%s\r\n" +
		"--" + boundary + "--\r\n"
)

// plan draws what each message of a run is: its size, its recipient and
// whether it is infected, from the run ID and the sequence number alone.
// It is read-only once made.
type plan struct {
	runID    string
	rcpts    []string
	size     SizeRange
	infected float64
	seed     uint64
}

func newPlan(runID string, rcpts []string, size SizeRange, infected float64) plan {
	h := fnv.New64a()
	_, _ = io.WriteString(h, runID)
	return plan{runID: runID, rcpts: rcpts, size: size, infected: infected, seed: h.Sum64()}
}

// draw returns message seq's size, recipient and whether it is infected.
func (p *plan) draw(seq int64) (size int, rcpt string, infected bool) {
	rnd := seqRand{state: p.seed ^ (uint64(seq) * 0x9e3779b97f4a7c15)}
	infected = p.infected > 0 && rnd.float() < p.infected
	size = p.size.Min
	if span := p.size.Max - p.size.Min; span > 0 {
		size += int(rnd.next() % uint64(span+1))
	}
	return size, p.rcpts[rnd.next()%uint64(len(p.rcpts))], infected
}

// composer builds the messages of one run. It is read-only once made and
// shared by all workers; each worker brings its own header buffer.
type composer struct {
	plan
	from   string
	domain string
	filler []byte // CRLF-terminated text lines, at least size.Max long
	tail   []byte // the EICAR attachment and the closing boundary
	crlf   []byte
}

func newComposer(cfg *Config) *composer {
	domain := "mailchaos.invalid"
	if _, d, ok := strings.Cut(cfg.From, "@"); ok && d != "" {
		domain = d
	}
	return &composer{
		plan:   newPlan(cfg.RunID, cfg.Rcpts, cfg.Size, cfg.Infected),
		from:   cfg.From,
		domain: domain,
		filler: filler(cfg.Size.Max),
		crlf:   []byte("\r\n"),
		tail:   fmt.Appendf(nil, infectedTailFmt, base64.StdEncoding.EncodeToString([]byte(clamd.EICAR))),
	}
}

// filler returns at least n bytes of 78-byte text lines (76 characters and
// CRLF). No line starts with a dot, so nothing needs dot-stuffing.
func filler(n int) []byte {
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua "
	b := make([]byte, 0, n+78)
	for line := 0; len(b) < n; line++ {
		start := len(b)
		b = fmt.Appendf(b, "mailchaos filler %07d ", line)
		for off := line % 17; len(b)-start < 76; off++ {
			b = append(b, words[off%len(words)])
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// message is one composed message: head, body, eol, tail. Only head is
// built per message; the rest are slices of the composer's shared buffers.
type message struct {
	rcpt string
	head []byte
	body []byte
	eol  []byte // CRLF when the body was cut inside a line
	tail []byte
}

// appendParts appends the message's non-empty parts to bufs, without the
// CRLF that ends the message: the worker sends it with the terminating dot.
func (m *message) appendParts(bufs net.Buffers) net.Buffers {
	for _, p := range [...][]byte{m.head, m.body, m.eol, m.tail} {
		if len(p) > 0 {
			bufs = append(bufs, p)
		}
	}
	last := bufs[len(bufs)-1]
	bufs[len(bufs)-1] = last[:len(last)-len("\r\n")]
	return bufs
}

// compose builds message seq, reusing buf for its head. The size, the
// recipient and whether it is infected are drawn from the run's seed and
// seq alone, so a run ID always produces the same messages.
//
// Every line of a message ends in CRLF, the message ends in CRLF, and no
// line starts with a dot, so it can be sent after DATA as it is, without
// dot-stuffing: header lines start with their names (From and To are
// checked addresses, the run ID has no CR or LF), filler lines with
// "mailchaos filler", MIME lines with "--", a header name or base64.
func (c *composer) compose(seq int64, now time.Time, buf []byte) message {
	size, rcpt, infected := c.draw(seq)

	b := append(buf[:0], "Message-ID: <"...)
	b = c.appendID(b, seq)
	b = append(b, '@')
	b = append(b, c.domain...)
	b = append(b, ">\r\nDate: "...)
	b = now.AppendFormat(b, time.RFC1123Z)
	b = append(b, "\r\nFrom: <"...)
	b = append(b, c.from...)
	b = append(b, ">\r\nTo: <"...)
	b = append(b, rcpt...)
	b = append(b, ">\r\nSubject: mailchaos load "...)
	b = c.appendID(b, seq)
	b = append(b, "\r\n"+HeaderID+": "...)
	b = c.appendID(b, seq)
	b = append(b, "\r\nMIME-Version: 1.0\r\nContent-Type: "...)
	var tail []byte
	if infected {
		b = append(b, infectedType+"\r\n\r\n"+infectedHead...)
		tail = c.tail
	} else {
		b = append(b, "text/plain; charset=us-ascii\r\n\r\n"...)
	}

	// The body is a prefix of the filler, cut to the size left over and
	// CRLF-terminated: a cut inside a line ends that line early, so the
	// message is size bytes (one less when the cut falls between CR and LF),
	// but never shorter than its head, a blank line and its tail.
	body, eol := []byte(nil), c.crlf
	if m := size - len(b) - len(tail) - len(c.crlf); m > 0 {
		if c.filler[m-1] == '\r' {
			body, eol = c.filler[:m+1], nil
		} else {
			body = c.filler[:m]
		}
	}
	return message{rcpt: rcpt, head: b, body: body, eol: eol, tail: tail}
}

// appendID appends "<run ID>-<seq>".
func (p *plan) appendID(b []byte, seq int64) []byte {
	b = append(b, p.runID...)
	b = append(b, '-')
	return strconv.AppendInt(b, seq, 10)
}

// seqRand is a splitmix64 generator: a few draws per message from a seed,
// with no shared state.
type seqRand struct{ state uint64 }

func (r *seqRand) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133b111b
	return z ^ (z >> 31)
}

// float returns a number in [0, 1).
func (r *seqRand) float() float64 { return float64(r.next()>>11) / (1 << 53) }
