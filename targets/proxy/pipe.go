package proxy

import (
	"math/rand/v2"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// affected rolls, once per connection and direction, whether a toxic with
// the given fraction applies. Toxiproxy's own toxicity is re-rolled every
// time the toxic chain changes; this roll is kept in the link's state and
// survives such changes.
func affected(fraction float64) bool {
	return fraction <= 0 || fraction >= 1 || rand.Float64() < fraction
}

const (
	// maxBacklog bounds the chunks a toxic reads ahead while it waits to
	// send (at most 2 MiB).
	maxBacklog = 64
	// eofGrace is how long a toxic keeps trying to send once its input has
	// ended; past it, the destination is taken to be gone too.
	eofGrace = 2 * time.Second
)

// pipe is the plumbing every mailchaos toxic shares: it sends chunks on
// while watching for an interrupt and for the end of the connection.
// Toxiproxy drops a link whose destination failed, after which nothing
// reads what a toxic sends and nothing interrupts it: a toxic that only
// waited on its output would leak. So while a send waits, pipe reads ahead
// from the input (into backlog), and once the input has ended it gives the
// send eofGrace before declaring the link dead.
type pipe struct {
	backlog []*stream.StreamChunk // read ahead; a nil entry is the end of input
	eof     bool
	dead    bool
}

// recv returns the next input chunk (nil at the end of input), or false if
// interrupted first.
func (p *pipe) recv(stub *toxics.ToxicStub) (*stream.StreamChunk, bool) {
	if len(p.backlog) > 0 {
		c := p.backlog[0]
		p.backlog = p.backlog[1:]
		return c, true
	}
	select {
	case <-stub.Interrupt:
		return nil, false
	case c := <-stub.Input:
		return c, true
	}
}

// next returns the next chunk's bytes. ok is false when the toxic must
// return: interrupted, or the input ended (the stub is then closed).
func (p *pipe) next(stub *toxics.ToxicStub) (data []byte, ok bool) {
	c, ok := p.recv(stub)
	if !ok {
		return nil, false
	}
	if c == nil {
		stub.Close()
		return nil, false
	}
	return c.Data, true
}

// send forwards data. It returns false, with data not sent, if interrupted
// first or if the link is dead (p.dead).
func (p *pipe) send(stub *toxics.ToxicStub, data []byte) bool {
	if len(data) == 0 {
		return true
	}
	return p.await(stub, &stream.StreamChunk{Data: data, Timestamp: time.Now()})
}

// hold waits until the toxic is removed (an interrupt), sending nothing:
// a stalled connection. Like send, it reads ahead, so that it sees the
// connection end; a link found dead is closed. Without that, a stalled
// toxic whose connection toxiproxy has given up on would wait for an
// interrupt that never comes.
func (p *pipe) hold(stub *toxics.ToxicStub) {
	p.await(stub, nil)
	p.stop(stub)
}

// await waits until chunk is sent (true), the toxic is interrupted, or the
// link is dead; a nil chunk is never sent. Meanwhile it reads ahead from
// the input (up to maxBacklog chunks), and once the input has ended it
// gives the toxic eofGrace before taking the link to be dead (p.dead).
func (p *pipe) await(stub *toxics.ToxicStub, chunk *stream.StreamChunk) bool {
	var out chan<- *stream.StreamChunk
	if chunk != nil {
		out = stub.Output
	}
	var grace <-chan time.Time
	for {
		in := stub.Input
		if p.eof || len(p.backlog) >= maxBacklog {
			in = nil
		}
		if p.eof && grace == nil {
			t := time.NewTimer(eofGrace)
			defer t.Stop()
			grace = t.C
		}
		select {
		case out <- chunk:
			return true
		case <-stub.Interrupt:
			return false
		case c := <-in:
			p.backlog = append(p.backlog, c)
			p.eof = c == nil
		case <-grace:
			p.dead = true
			return false
		}
	}
}

// stop ends a Pipe whose send failed: a dead link is closed; an interrupted
// one is left to toxiproxy.
func (p *pipe) stop(stub *toxics.ToxicStub) {
	if p.dead {
		stub.Close()
	}
}

// wait sleeps for d unless interrupted first (false).
func wait(stub *toxics.ToxicStub, d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stub.Interrupt:
		return false
	}
}

// flush is for Cleanup, when the toxic is removed: it sends on held bytes
// and everything read ahead, closing the stub if the input had ended. It
// gives up after a second if nothing reads (the connection is gone then).
func (p *pipe) flush(stub *toxics.ToxicStub, held []byte) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	out := func(data []byte) bool {
		if len(data) == 0 {
			return true
		}
		select {
		case stub.Output <- &stream.StreamChunk{Data: data, Timestamp: time.Now()}:
			return true
		case <-t.C:
			return false
		}
	}
	if !out(held) {
		return
	}
	for _, c := range p.backlog {
		if c == nil {
			stub.Close()
			break
		}
		if !out(c.Data) {
			break
		}
	}
	p.backlog = nil
}
