package network

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"

	"github.com/mailchaos/mailchaos/targets/mailstack/clamd"
)

// Names of mailchaos' own toxic types, as the toxiproxy API knows them once
// [RegisterToxics] has run.
const (
	ToxicBlackhole     = "mailchaos_blackhole"
	ToxicStall         = "mailchaos_stall"
	ToxicDrip          = "mailchaos_drip"
	ToxicClamdLatency  = "mailchaos_clamd_latency"
	ToxicClamdError    = "mailchaos_clamd_error"
	maxClamdScanBuffer = 4 << 20
)

// RegisterToxics installs mailchaos' toxic types into toxiproxy's toxic
// registry. Toxiproxy keeps that registry process-wide, so this is called
// explicitly at start-up by whatever starts a toxiproxy server
// ([StartServer], `mailchaos proxy serve`); calling it again is harmless.
func RegisterToxics() {
	for name, t := range map[string]toxics.Toxic{
		ToxicBlackhole:    new(BlackholeToxic),
		ToxicStall:        new(StallToxic),
		ToxicDrip:         new(DripToxic),
		ToxicClamdLatency: new(ClamdLatencyToxic),
		ToxicClamdError:   new(ClamdErrorToxic),
	} {
		toxics.Register(name, t)
	}
}

// affected rolls, once per connection and direction, whether a toxic with
// the given fraction applies. Toxiproxy's own toxicity is re-rolled every
// time the toxic chain changes; this roll is kept in the link's state and
// survives such changes.
func affected(fraction float64) bool {
	return fraction <= 0 || fraction >= 1 || rand.Float64() < fraction
}

// connState is the per-connection, per-direction state of a toxic.
type connState struct {
	hit     bool   // this connection is affected
	seen    int64  // bytes passed so far (stall)
	stalled bool   // the stall has begun
	pending []byte // bytes read but not yet forwarded
}

// forward sends a chunk on, or returns false if interrupted first (the chunk
// is then kept in st.pending).
func forward(stub *toxics.ToxicStub, st *connState, data []byte) bool {
	if len(data) == 0 {
		return true
	}
	select {
	case stub.Output <- &stream.StreamChunk{Data: data, Timestamp: time.Now()}:
		return true
	case <-stub.Interrupt:
		st.pending = data
		return false
	}
}

// flushPending forwards bytes kept from an earlier run of the toxic. It
// reports false if interrupted again.
func flushPending(stub *toxics.ToxicStub, st *connState) bool {
	data := st.pending
	st.pending = nil
	return forward(stub, st, data)
}

// BlackholeToxic swallows every byte in its direction and never closes the
// connection: no FIN, no RST, the peer just hears nothing. Removing it
// closes the connections it swallowed bytes of, since their byte streams
// are broken. Fraction (0..1, 0 meaning all) picks the connections affected.
type BlackholeToxic struct {
	Fraction float64 `json:"fraction"`
}

// NewState rolls whether a connection is affected.
func (t *BlackholeToxic) NewState() any { return &connState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *BlackholeToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*connState)
	if !flushPending(stub, st) {
		return
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !st.hit {
				if !forward(stub, st, c.Data) {
					return
				}
				continue
			}
			st.stalled = true // bytes lost: the stream is broken from here on
		}
	}
}

// Cleanup closes connections whose bytes were swallowed.
func (t *BlackholeToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, ok := stub.State.(*connState); ok && st.stalled {
		stub.Close()
	}
}

// StallToxic lets the first Bytes bytes of a connection's direction pass
// (or, with Line set, everything up to and including the first newline: a
// protocol greeting), then stops reading: the sender's writes back up into
// the kernel buffers and the connection hangs, open and silent. Nothing is
// lost: once the toxic is removed the held bytes flow on. Fraction picks
// the connections affected (0 meaning all).
type StallToxic struct {
	Bytes    int64   `json:"bytes"`
	Line     bool    `json:"line"`
	Fraction float64 `json:"fraction"`
}

// NewState rolls whether a connection is affected.
func (t *StallToxic) NewState() any { return &connState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *StallToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*connState)
	for {
		if st.stalled {
			// Hold everything, including bytes already read, until removed.
			<-stub.Interrupt
			return
		}
		if st.pending != nil && !flushPending(stub, st) {
			return
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !st.hit {
				if !forward(stub, st, c.Data) {
					return
				}
				continue
			}
			pass := len(c.Data)
			if t.Line {
				if i := bytes.IndexByte(c.Data, '\n'); i >= 0 {
					pass = i + 1
					st.stalled = true
				}
			} else if left := t.Bytes - st.seen; int64(pass) >= left {
				pass = int(max(left, 0))
				st.stalled = true
			}
			st.seen += int64(pass)
			head, rest := c.Data[:pass], c.Data[pass:]
			if !forward(stub, st, head) {
				st.pending = append(st.pending, rest...)
				return
			}
			if len(rest) > 0 {
				st.pending = rest
			}
		}
	}
}

// Cleanup releases the bytes a stalled connection held.
func (t *StallToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, ok := stub.State.(*connState); ok && len(st.pending) > 0 {
		flushOnCleanup(stub, st.pending)
		st.pending = nil
	}
}

// DripToxic passes bytes at Rate bytes per second (at least one byte every
// 100 ms slice), so a transfer crawls but never stops. Fraction picks the
// connections affected (0 meaning all).
type DripToxic struct {
	Rate     int64   `json:"rate"`
	Fraction float64 `json:"fraction"`
}

// NewState rolls whether a connection is affected.
func (t *DripToxic) NewState() any { return &connState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *DripToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*connState)
	rate := max(t.Rate, 1)
	const slice = 100 * time.Millisecond
	per := max(rate/10, 1)
	wait := time.Duration(float64(time.Second) * float64(per) / float64(rate))
	for {
		if len(st.pending) == 0 {
			select {
			case <-stub.Interrupt:
				return
			case c := <-stub.Input:
				if c == nil {
					stub.Close()
					return
				}
				if !st.hit {
					if !forward(stub, st, c.Data) {
						return
					}
					continue
				}
				st.pending = c.Data
			}
		}
		n := min(int64(len(st.pending)), per)
		piece := st.pending[:n]
		st.pending = st.pending[n:]
		if !forward(stub, st, piece) {
			st.pending = append(piece, st.pending...)
			return
		}
		timer := time.NewTimer(min(wait, slice*10))
		select {
		case <-timer.C:
		case <-stub.Interrupt:
			timer.Stop()
			return
		}
	}
}

// Cleanup sends on what a dripping connection still held.
func (t *DripToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, ok := stub.State.(*connState); ok && len(st.pending) > 0 {
		flushOnCleanup(stub, st.pending)
		st.pending = nil
	}
}

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
	cmd     []byte // command being read
	inData  bool   // between INSTREAM and its terminator
	hdr     []byte // chunk length bytes read so far
	left    uint32 // chunk data bytes still to come
	payload []byte // the scanned payload so far (capped)
	held    []byte // bytes read but not forwarded
	matched bool
	delayed bool // the delay of the current scan has been served
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
	if st, ok := stub.State.(*clamdScan); ok && len(st.held) > 0 {
		flushOnCleanup(stub, st.held)
		st.held = nil
	}
}

// Pipe implements toxics.Toxic.
func (t *ClamdLatencyToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*clamdScan)
	m := t.matcher()
	for {
		if len(st.held) > 0 {
			if !t.release(stub, st, m) {
				return
			}
			continue
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			st.held = c.Data
		}
	}
}

// release parses held bytes and forwards them, serving the delay before the
// terminator of a matching scan. It returns false if interrupted, with the
// unsent bytes still held.
func (t *ClamdLatencyToxic) release(stub *toxics.ToxicStub, st *clamdScan, m *clamd.Matcher) bool {
	end := scanClamd(st, st.held)
	if end < 0 {
		data := st.held
		st.held = nil
		ok := forwardRaw(stub, data)
		if !ok {
			st.held = data
		}
		return ok
	}
	// st.held[:end] ends with the stream terminator.
	if !st.delayed {
		if _, found := m.Match(st.payload); found {
			st.matched = true
		}
		if st.matched {
			d := time.Duration(t.Latency) * time.Millisecond
			if t.Jitter > 0 {
				d += time.Duration(rand.Int64N(2*t.Jitter+1)-t.Jitter) * time.Millisecond
			}
			timer := time.NewTimer(max(d, 0))
			select {
			case <-timer.C:
			case <-stub.Interrupt:
				timer.Stop()
				st.delayed = true // removed or changed: this scan is no longer delayed
				return false
			}
		}
		st.delayed = true
	}
	data := st.held[:end]
	if !forwardRaw(stub, data) {
		return false
	}
	st.held = st.held[end:]
	st.payload, st.matched, st.delayed = st.payload[:0], false, false
	return true
}

func forwardRaw(stub *toxics.ToxicStub, data []byte) bool {
	select {
	case stub.Output <- &stream.StreamChunk{Data: data, Timestamp: time.Now()}:
		return true
	case <-stub.Interrupt:
		return false
	}
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
	hit     bool
	partial []byte // the start of a reply whose terminator has not come yet
	out     []byte // rewritten replies not yet forwarded
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
			if !forwardRaw(stub, st.out) {
				return
			}
			st.out = nil
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !st.hit {
				st.out = c.Data
				continue
			}
			st.partial = append(st.partial, c.Data...)
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
}

// Cleanup forwards rewritten replies still held.
func (t *ClamdErrorToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, ok := stub.State.(*errorState); ok && len(st.out) > 0 {
		flushOnCleanup(stub, st.out)
		st.out = nil
	}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// flushOnCleanup forwards bytes a removed toxic still held, giving up after
// a second if nothing reads them (the connection is then gone anyway).
func flushOnCleanup(stub *toxics.ToxicStub, data []byte) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case stub.Output <- &stream.StreamChunk{Data: data, Timestamp: time.Now()}:
	case <-t.C:
	}
}
