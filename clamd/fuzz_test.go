package clamd

import (
	"bufio"
	"bytes"
	"testing"
)

func FuzzMatch(f *testing.F) {
	f.Add([]byte(EICAR))
	f.Add(withAttachment([]byte(EICAR)))
	f.Add(withAttachment([]byte("clean")))
	f.Add(qpMessage(EICAR))
	f.Add(plainMessage(512))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQpoaQ==\r\n--b--\r\n"))
	f.Add([]byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=4=ZZ=4"))
	m := NewMatcher(DefaultSignatures())
	f.Fuzz(func(t *testing.T, payload []byte) {
		name, found := m.Match(payload)
		if bytes.Contains(payload, []byte(EICAR)) && (!found || name != EICARSignature) {
			t.Fatalf("raw EICAR not reported: %q %v", name, found)
		}
		if found != (name != "") {
			t.Fatalf("found=%v with name %q", found, name)
		}
	})
}

func FuzzServerCommand(f *testing.F) {
	f.Add([]byte("zPING\x00"))
	f.Add([]byte("nVERSION\n"))
	f.Add([]byte("PING"))
	f.Add(instream('z', []byte(EICAR)))
	f.Add(instream('n', withAttachment([]byte(EICAR))))
	f.Add([]byte("zIDSESSION\x00zPING\x00nVERSION\nzINSTREAM\x00\x00\x00\x00\x02ab\x00\x00\x00\x00zEND\x00"))
	f.Add([]byte("nIDSESSION\nPING\n"))
	f.Add([]byte("zINSTREAM\x00\xff\xff\xff\xff"))
	f.Add([]byte("zFOO\x00"))
	s := &Server{StreamMaxLength: 4096, IdleTimeout: -1}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		_, _ = s.handle(&conn{}, bufio.NewReader(bytes.NewReader(in)), &out)
		if out.Len() == 0 {
			return
		}
		// Every reply is terminated, and there is at most one reply per
		// command byte sent.
		if last := out.Bytes()[out.Len()-1]; last != 0 && last != '\n' {
			t.Fatalf("unterminated reply %q", out.Bytes())
		}
		if out.Len() > 256*(len(in)+1) {
			t.Fatalf("%d bytes of reply to %d bytes", out.Len(), len(in))
		}
	})
}

func FuzzParseScanReply(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: X FOUND", "INSTREAM size limit exceeded. ERROR", "", ": FOUND"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		res, err := parseScanReply(reply)
		if err != nil && res != (Result{}) {
			t.Fatalf("error with a result: %+v", res)
		}
		if res.Infected != (res.Signature != "") {
			t.Fatalf("inconsistent result %+v", res)
		}
	})
}
