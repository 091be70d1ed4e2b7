package proxy

import (
	"bytes"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"

	"github.com/mailchaos/mailchaos/faults/network"
)

// silenceToxiproxy replaces zerolog's global logger once, before any toxic
// can use it.
var silenceToxiproxy sync.Once //nolint:gochecknoglobals // process-wide like the logger it guards

// RegisterToxics installs mailchaos' toxic types into toxiproxy's toxic
// registry. Toxiproxy keeps that registry process-wide, so this is called
// explicitly at start-up by whatever starts a toxiproxy server
// ([StartServer], `mailchaos proxy serve`); calling it again is harmless.
//
// It also silences toxiproxy's own toxics, which log through zerolog's
// global logger (a bandwidth toxic traces every interruption to stderr).
func RegisterToxics() {
	silenceToxiproxy.Do(func() { zlog.Logger = zerolog.Nop() })
	for name, t := range map[string]toxics.Toxic{
		network.ToxicBlackhole:    new(BlackholeToxic),
		network.ToxicStall:        new(StallToxic),
		network.ToxicDrip:         new(DripToxic),
		network.ToxicClamdLatency: new(ClamdLatencyToxic),
		network.ToxicClamdError:   new(ClamdErrorToxic),
		network.ToxicDivert:       new(DivertToxic),
	} {
		toxics.Register(name, t)
	}
}

// BlackholeToxic swallows every byte in its direction and never closes the
// connection: no FIN, no RST, the peer just hears nothing. Removing it
// closes the connections it swallowed bytes of, since their byte streams
// are broken. Fraction (0..1, 0 meaning all) picks the connections affected.
type BlackholeToxic struct {
	Fraction float64 `json:"fraction"`
}

type blackholeState struct {
	pipe
	hit     bool
	broken  bool   // bytes were swallowed
	pending []byte // bytes of an unaffected connection not yet sent
}

// NewState rolls whether a connection is affected.
func (t *BlackholeToxic) NewState() any { return &blackholeState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *BlackholeToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*blackholeState)
	for {
		if len(st.pending) > 0 {
			if !st.send(stub, st.pending) {
				st.stop(stub)
				return
			}
			st.pending = nil
		}
		c, ok := st.recv(stub)
		switch {
		case !ok:
			return
		case c == nil:
			stub.Close()
			return
		case st.hit:
			st.broken = true
		default:
			st.pending = c.Data
		}
	}
}

// Cleanup closes connections whose bytes were swallowed and sends on what
// the others still held.
func (t *BlackholeToxic) Cleanup(stub *toxics.ToxicStub) {
	st := stub.State.(*blackholeState)
	if st.broken {
		stub.Close()
		return
	}
	st.flush(stub, st.pending)
	st.pending = nil
}

// StallToxic lets the first Bytes bytes of a connection's direction pass
// (or, with Line set, everything up to and including the first newline: a
// protocol greeting), then passes nothing on: past a read-ahead of at most
// 2 MiB the sender's writes back up into the kernel buffers, and the
// connection hangs, open and silent. (A connection whose sender has closed
// is dropped 2 s later if the toxic is still there.) Nothing is
// lost: once the toxic is removed the held bytes flow on. Fraction picks
// the connections affected (0 meaning all).
type StallToxic struct {
	Bytes    int64   `json:"bytes"`
	Line     bool    `json:"line"`
	Fraction float64 `json:"fraction"`
}

type stallState struct {
	pipe
	hit     bool
	seen    int64  // bytes passed so far
	stalled bool   // the stall has begun
	pending []byte // bytes read but not yet sent
}

// NewState rolls whether a connection is affected.
func (t *StallToxic) NewState() any { return &stallState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic. The stall's progress (bytes passed,
// stalled) only changes once bytes were really sent, so an interrupt (the
// chain changing) never lets held bytes slip through.
func (t *StallToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*stallState)
	for {
		if st.stalled {
			// Hold everything until the toxic is removed.
			st.hold(stub)
			return
		}
		var data []byte
		if len(st.pending) > 0 {
			data, st.pending = st.pending, nil
		} else {
			var ok bool
			if data, ok = st.next(stub); !ok {
				return
			}
		}
		pass, stall := len(data), false
		if st.hit {
			if t.Line {
				if i := bytes.IndexByte(data, '\n'); i >= 0 {
					pass, stall = i+1, true
				}
			} else if left := t.Bytes - st.seen; int64(pass) >= left {
				pass, stall = int(max(left, 0)), true
			}
		}
		if !st.send(stub, data[:pass]) {
			st.pending = data
			st.stop(stub)
			return
		}
		st.seen += int64(pass)
		st.stalled = stall
		st.pending = data[pass:]
	}
}

// Cleanup releases the bytes a stalled connection held.
func (t *StallToxic) Cleanup(stub *toxics.ToxicStub) {
	st := stub.State.(*stallState)
	st.flush(stub, st.pending)
	st.pending = nil
}

// DripToxic passes bytes at Rate bytes per second, in pieces of a tenth of
// a second's worth (at least one byte), so a transfer crawls but never
// stops. Fraction picks the connections affected (0 meaning all).
type DripToxic struct {
	Rate     int64   `json:"rate"`
	Fraction float64 `json:"fraction"`
}

type dripState struct {
	pipe
	hit     bool
	pending []byte
}

// NewState rolls whether a connection is affected.
func (t *DripToxic) NewState() any { return &dripState{hit: affected(t.Fraction)} }

// Pipe implements toxics.Toxic.
func (t *DripToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*dripState)
	rate := max(t.Rate, 1)
	per := max(rate/10, 1)
	pause := time.Duration(float64(time.Second) * float64(per) / float64(rate))
	for {
		if len(st.pending) == 0 {
			data, ok := st.next(stub)
			if !ok {
				return
			}
			st.pending = data
		}
		n := int64(len(st.pending))
		if st.hit {
			n = min(n, per)
		}
		if !st.send(stub, st.pending[:n]) {
			st.stop(stub)
			return
		}
		st.pending = st.pending[n:]
		if st.hit && !wait(stub, pause) {
			return
		}
	}
}

// Cleanup sends on what a dripping connection still held.
func (t *DripToxic) Cleanup(stub *toxics.ToxicStub) {
	st := stub.State.(*dripState)
	st.flush(stub, st.pending)
	st.pending = nil
}

// DivertToxic marks a link whose proxy was pointed away from its upstream
// (at a plugin's own interceptor, see [network.Divert]). It passes bytes through
// unchanged; Restore is the upstream the proxy must be pointed back at when
// the toxic is removed, by whoever removes it: the injector, the host of a
// plugin that died, `mailchaos recover`, or the reaper at the toxic's
// expiry.
type DivertToxic struct {
	toxics.NoopToxic
	Restore string `json:"restore"`
}
