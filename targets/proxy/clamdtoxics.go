package proxy

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"

	"github.com/mailchaos/mailchaos/clamd"
)

// maxClamdScanBuffer caps the payload ClamdLatencyToxic keeps per scan to
// decide whether it matches.
const maxClamdScanBuffer = 4 << 20

// ClamdLatencyToxic follows the clamd INSTREAM exchange on the upstream
// stream (MTA to engine) and delays the end of a scan's stream by Latency ±
// Jitter milliseconds when the scanned payload matches Pattern (or, when
// Pattern is empty, carries the EICAR test string), looking inside MIME
// parts the way an engine does. Other scans and commands pass untouched:
// the engine "recognises the virus but becomes slow while handling it".
type ClamdLatencyToxic struct {
	Latency int64  `json:"latency"`
	Jitter  int64  `json:"jitter"`
	Pattern string `json:"pattern"`
}

// clamdScan is the per-connection parser state of ClamdLatencyToxic.
type clamdScan struct {
	pipe
	cmd     []byte // command being read
	inData  bool   // between INSTREAM and its terminator
	hdr     []byte // chunk length bytes read so far
	left    uint32 // chunk data bytes still to come
	payload []byte // the scanned payload so far (capped)
	held    []byte // bytes read but not forwarded, parsed once
	end     int    // index just past a stream terminator in held, or -1
	delayed bool   // the delay of the current scan has been served
}

// NewState returns a fresh parser.
func (t *ClamdLatencyToxic) NewState() any { return &clamdScan{} }

// GetBufferSize lets the proxy keep reading while a scan is delayed.
func (t *ClamdLatencyToxic) GetBufferSize() int { return 64 }

func (t *ClamdLatencyToxic) matcher() *clamd.Matcher {
	if t.Pattern == "" {
		return clamd.NewMatcher([]clamd.Signature{{Name: "eicar", Pattern: []byte(clamd.EICAR)}})
	}
	return clamd.NewMatcher([]clamd.Signature{{Name: "pattern", Pattern: []byte(t.Pattern)}})
}

// Cleanup forwards the bytes of a scan still held back.
func (t *ClamdLatencyToxic) Cleanup(stub *toxics.ToxicStub) {
	st := stub.State.(*clamdScan)
	st.flush(stub, st.held)
	st.held = nil
}

// Pipe implements toxics.Toxic.
func (t *ClamdLatencyToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*clamdScan)
	m := t.matcher()
	for {
		if len(st.held) > 0 {
			if !t.release(stub, st, m) {
				st.stop(stub)
				return
			}
			continue
		}
		data, ok := st.next(stub)
		if !ok {
			return
		}
		st.held = data
		st.end = scanClamd(st, st.held) // each byte is parsed exactly once
	}
}

// release parses held bytes and forwards them, serving the delay before the
// terminator of a matching scan. It returns false if interrupted (or the
// link is dead), with the unsent bytes still held.
func (t *ClamdLatencyToxic) release(stub *toxics.ToxicStub, st *clamdScan, m *clamd.Matcher) bool {
	end := st.end
	if end < 0 {
		if !st.send(stub, st.held) {
			return false
		}
		st.held = nil
		return true
	}
	// st.held[:end] ends with the stream terminator.
	if !st.delayed {
		st.delayed = true
		if _, found := m.Match(st.payload); found {
			d := time.Duration(t.Latency) * time.Millisecond
			if t.Jitter > 0 {
				d += time.Duration(rand.Int64N(2*t.Jitter+1)-t.Jitter) * time.Millisecond
			}
			if !wait(stub, d) {
				// Removed or changed mid-delay: this scan is not delayed again.
				return false
			}
		}
	}
	if !st.send(stub, st.held[:end]) {
		return false
	}
	st.held = st.held[end:]
	st.payload, st.delayed = st.payload[:0], false
	st.end = scanClamd(st, st.held) // the next command, if it came in the same chunk
	return true
}

// scanClamd advances the clamd parser over data and returns the index just
// past an INSTREAM terminator in data, or -1 when data holds none. Bytes
// before that index are consumed by the parser; data from there on is not.
func scanClamd(st *clamdScan, data []byte) int {
	for i := 0; i < len(data); {
		switch {
		case !st.inData:
			b := data[i]
			i++
			if b == 0 || b == '\n' {
				cmd := string(bytes.TrimLeft(st.cmd, "zn"))
				st.cmd = st.cmd[:0]
				if cmd == "INSTREAM" {
					st.inData = true
				}
				continue
			}
			if len(st.cmd) < 64 {
				st.cmd = append(st.cmd, b)
			}
		case st.left > 0:
			n := min(uint32(len(data)-i), st.left)
			if len(st.payload) < maxClamdScanBuffer {
				st.payload = append(st.payload, data[i:i+int(n)]...)
			}
			st.left -= n
			i += int(n)
		default:
			need := 4 - len(st.hdr)
			n := min(need, len(data)-i)
			st.hdr = append(st.hdr, data[i:i+n]...)
			i += n
			if len(st.hdr) == 4 {
				st.left = binary.BigEndian.Uint32(st.hdr)
				st.hdr = st.hdr[:0]
				if st.left == 0 {
					st.inData = false
					return i
				}
			}
		}
	}
	return -1
}

// ClamdErrorToxic sits on the downstream stream (engine to MTA) and turns
// every clamd reply into "<Reply> ERROR", keeping the reply's terminator and
// any IDSESSION "N: " prefix: the engine answers, but with an error.
// Fraction picks the connections affected (0 meaning all).
type ClamdErrorToxic struct {
	Reply    string  `json:"reply"`
	Fraction float64 `json:"fraction"`
}

// errorState is the per-connection state of ClamdErrorToxic.
type errorState struct {
	pipe
	hit     bool
	partial []byte // the start of a reply whose terminator has not come yet
	out     []byte // replies (rewritten if hit) not yet forwarded
}

// NewState rolls whether a connection is affected.
func (t *ClamdErrorToxic) NewState() any { return &errorState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *ClamdErrorToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*errorState)
	msg := t.Reply
	if msg == "" {
		msg = "stream: Can't allocate memory"
	}
	for {
		if len(st.out) > 0 {
			if !st.send(stub, st.out) {
				st.stop(stub)
				return
			}
			st.out = nil
		}
		data, ok := st.next(stub)
		if !ok {
			return
		}
		if !st.hit {
			st.out = data
			continue
		}
		st.partial = append(st.partial, data...)
		for {
			i := bytes.IndexAny(st.partial, "\x00\n")
			if i < 0 {
				break
			}
			reply, term := st.partial[:i], st.partial[i]
			prefix := ""
			if j := bytes.Index(reply, []byte(": ")); j > 0 && isDigits(reply[:j]) {
				prefix = string(reply[:j+2])
			}
			st.out = append(st.out, prefix+msg+" ERROR"...)
			st.out = append(st.out, term)
			st.partial = st.partial[i+1:]
		}
	}
}

// Cleanup forwards replies still held.
func (t *ClamdErrorToxic) Cleanup(stub *toxics.ToxicStub) {
	st := stub.State.(*errorState)
	st.flush(stub, st.out)
	st.out = nil
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
