package clamd

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultSignatures(t *testing.T) {
	sigs := DefaultSignatures()
	require.Len(t, EICAR, 68)
	require.Equal(t, `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`, EICAR)
	require.Equal(t, "Win.Test.EICAR_HDB-1", sigs[0].Name)
	require.Equal(t, []byte(EICAR), sigs[0].Pattern)

	// Each call returns fresh data.
	sigs[0].Name = "changed"
	sigs[0].Pattern[0] = 'Y'
	again := DefaultSignatures()
	require.Equal(t, EICARSignature, again[0].Name)
	require.Equal(t, []byte(EICAR), again[0].Pattern)
}

func TestMatch(t *testing.T) {
	m := NewMatcher(DefaultSignatures())

	nestedMessage := "From: x@example.test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=inner\r\n\r\n" +
		"--inner\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		wrap76(base64.StdEncoding.EncodeToString([]byte("PK.."+EICAR))) + "--inner--\r\n"

	// EICAR straddling the boundary between two decode windows.
	straddle := append(bytes.Repeat([]byte("a"), matchWindow-30), EICAR...)
	straddle = append(straddle, bytes.Repeat([]byte("b"), 3*matchWindow)...)

	tests := []struct {
		name    string
		payload string
		want    string // signature, empty for clean
	}{
		{"raw", EICAR, EICARSignature},
		{"raw inside a plain message", string(plainMessage(2000)) + EICAR + "\r\n", EICARSignature},
		{"base64 attachment", string(withAttachment([]byte(EICAR))), EICARSignature},
		{"base64 attachment with padding bytes around", string(withAttachment([]byte("\x00\x01" + EICAR + "\xff"))), EICARSignature},
		{"quoted-printable body", string(qpMessage(EICAR)), EICARSignature},
		{"quoted-printable part", "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"q\"\r\n\r\n" +
			"--q\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n" +
			qpEncodeAll(EICAR) + "\r\n--q--\r\n", EICARSignature},
		{"lower-case header, upper-case value", "mime-version: 1.0\r\ncontent-type: multipart/mixed; boundary=x\r\n\r\n" +
			"--x\r\ncontent-transfer-encoding: BASE64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(EICAR)) + "\r\n--x--\r\n", EICARSignature},
		{"single-part base64 message", "Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			wrap76(base64.StdEncoding.EncodeToString([]byte(EICAR))), EICARSignature},
		{"base64 with stray spaces and no padding", "Content-Transfer-Encoding: base64\r\n\r\n" +
			strings.Join(strings.Split(strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(EICAR+"!!")), "="), "A"), " A "), EICARSignature},
		{"nested multipart", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n" +
			"--outer\r\nContent-Type: multipart/alternative; boundary=mid\r\n\r\n" +
			"--mid\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
			"--mid\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString([]byte("<p>"+EICAR+"</p>")) + "\r\n--mid--\r\n--outer--\r\n", EICARSignature},
		{"attached message with an encoded part", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n" +
			"--outer\r\nContent-Type: message/rfc822\r\n\r\n" + nestedMessage + "\r\n--outer--\r\n", EICARSignature},
		{"base64-encoded attached message", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n" +
			"--outer\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			wrap76(base64.StdEncoding.EncodeToString([]byte(nestedMessage))) + "--outer--\r\n", EICARSignature},
		{"mbox From line", "From alice@example.test Mon Jan  6 09:00:00 2025\r\n" + string(qpMessage(EICAR)), EICARSignature},
		{"unterminated multipart", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(EICAR)), EICARSignature},
		{"decode window boundary", "Content-Transfer-Encoding: base64\r\n\r\n" +
			wrap76(base64.StdEncoding.EncodeToString(straddle)), EICARSignature},
		{"test marker", "Subject: x\r\n\r\n" + TestMarker, TestMarkerSignature},

		{"clean plain", string(plainMessage(4096)), ""},
		{"clean attachment", string(withAttachment([]byte("just a PDF, honest"))), ""},
		{"clean quoted-printable", string(qpMessage("caf\xc3\xa9 = coffee")), ""},
		{"empty", "", ""},
		{"encoding header but no message", "Content-Transfer-Encoding: base64", ""},
		{"garbage after encoding header", "Content-Transfer-Encoding: base64\r\n\r\n%%%%\x00\xff====", ""},
		{"bad content type", "Content-Type: multipart/;;;\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n", ""},
		{"identity-encoded part is not decoded", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
			"Content-Transfer-Encoding: 7bit\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(EICAR)) + "\r\n--b--\r\n" +
			"Content-Transfer-Encoding: base64\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := m.Match([]byte(tt.payload))
			require.Equal(t, tt.want != "", found)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMatchEncodedPayloadsHideTheRawPattern(t *testing.T) {
	// The MIME tests above are only meaningful if the encodings really
	// hide the pattern from a raw search.
	require.NotContains(t, string(withAttachment([]byte(EICAR))), EICAR)
	require.NotContains(t, string(qpMessage(EICAR)), EICAR)
}

func TestMatchOrderAndCopies(t *testing.T) {
	sigs := []Signature{
		{Name: "Empty", Pattern: nil},
		{Name: "Second\nLine", Pattern: []byte("beta")},
		{Name: "First", Pattern: []byte("alpha")},
	}
	m := NewMatcher(sigs)

	// Signature order, not position in the payload, decides.
	got, found := m.Match([]byte("alpha beta"))
	require.True(t, found)
	require.Equal(t, "Second_Line", got, "names are sanitized for the protocol")

	// The matcher keeps its own copy.
	sigs[1].Pattern[0] = 'X'
	got, found = m.Match([]byte("...beta..."))
	require.True(t, found)
	require.Equal(t, "Second_Line", got)

	// An empty pattern never matches.
	_, found = m.Match([]byte("nothing here"))
	require.False(t, found)

	var zero Matcher
	_, found = zero.Match([]byte(EICAR))
	require.False(t, found)
	var nilMatcher *Matcher
	_, found = nilMatcher.Match([]byte(EICAR))
	require.False(t, found)
}

func TestHasEncodedContent(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"Content-Transfer-Encoding: base64\r\n", true},
		{"content-transfer-encoding:quoted-printable", true},
		{"CONTENT-TRANSFER-ENCODING :\r\n\t\"Base64\"", true},
		{"x\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64", true},
		{"Content-Transfer-Encoding: 7bit\r\n", false},
		{"Content-Transfer-Encoding base64", false},
		{"Content-Transfer-Encodin", false},
		{"base64 quoted-printable", false},
		{"", false},
	} {
		require.Equal(t, tt.want, hasEncodedContent([]byte(tt.in)), "%q", tt.in)
	}
}

func TestMatchPlainMessageDoesNotAllocate(t *testing.T) {
	m := NewMatcher(DefaultSignatures())
	msg := plainMessage(4096)
	allocs := testing.AllocsPerRun(100, func() {
		if _, found := m.Match(msg); found {
			panic("clean message matched")
		}
	})
	require.Zero(t, allocs)
}

func TestMatchConcurrent(t *testing.T) {
	m := NewMatcher(DefaultSignatures())
	payloads := [][]byte{withAttachment([]byte(EICAR)), qpMessage(EICAR), plainMessage(4096), []byte(EICAR)}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				p := payloads[(g+i)%len(payloads)]
				_, found := m.Match(p)
				if found == bytes.Equal(p, payloads[2]) {
					t.Errorf("payload %d: found=%v", (g+i)%len(payloads), found)
				}
			}
		})
	}
	wg.Wait()
}
