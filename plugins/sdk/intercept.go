package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
)

// ConnHandler handles one connection diverted from a link: client is the
// connection from the link's client, upstream a new connection to the
// link's upstream. ctx ends when the interception ends. Both connections
// are closed when the handler returns.
type ConnHandler func(ctx context.Context, client, upstream net.Conn)

// Interceptor runs stream faults written in Go: it diverts a link through
// a listener of the plugin's, on loopback, and hands each connection to a
// [ConnHandler], which sees and may change every byte both ways (answer a
// command itself, hold a reply back, ...).
//
// The diversion is recorded on the link as a toxic named after the
// request's owner, ID and expiry, which names the upstream to point the
// link back at. Whoever removes that toxic restores the link: the plugin
// (Stop, or the request's TTL), mailchaos when the plugin dies, or the
// toxiproxy server mailchaos runs at the expiry. Changing a link's upstream
// restarts its proxy, so connections through the link are closed when an
// interception starts and ends.
//
// Close stops every interception; call it when the plugin ends (Serve
// does not know about the interceptor).
type Interceptor struct {
	mu   sync.Mutex
	runs map[string]*interception // by owner/id
}

// NewInterceptor returns an interceptor with nothing intercepted.
func NewInterceptor() *Interceptor { return &Interceptor{runs: map[string]*interception{}} }

// interception is one diverted link.
type interception struct {
	ln       net.Listener
	upstream string
	handler  ConnHandler
	handle   Handle
	ctx      context.Context
	cancel   context.CancelFunc
	timer    *time.Timer

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Start diverts link through handler for req, until [Interceptor.Stop]
// or req.TTL, and returns the handle that ends it.
func (ic *Interceptor) Start(ctx context.Context, req Request, link string, handler ConnHandler) (Handle, error) {
	if err := CheckLinks(req.Fault, req.Target, []string{link}); err != nil {
		return Handle{}, err
	}
	if req.TTL <= 0 {
		return Handle{}, fmt.Errorf("%s: request %s has no TTL", req.Fault, req.ID)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Handle{}, fmt.Errorf("intercept link %s: %w", link, err)
	}
	now := time.Now()
	h := faults.Intent(req)
	h.Injected, h.Expires = now, now.Add(req.TTL)
	server := req.Target.Server(link)
	c := network.NewClient(server)
	tox, err := network.Divert(ctx, c, req.Owner, req.ID, link, ln.Addr().String(), h.Expires, 0)
	if err != nil {
		ln.Close()
		return Handle{}, err
	}
	h.Toxics = []ToxicRef{{Proxy: link, Name: tox.Name}}
	if server != h.Toxiproxy {
		h.Toxics[0].Toxiproxy = server
	}
	restore, _ := tox.Attributes["restore"].(string)
	run := &interception{ln: ln, upstream: restore, handler: handler, handle: h, conns: map[net.Conn]struct{}{}}
	run.ctx, run.cancel = context.WithCancel(context.Background())
	run.wg.Add(1)
	go run.serve()
	// The interception ends by itself at the TTL.
	run.timer = time.AfterFunc(req.TTL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ic.Stop(ctx, h)
	})
	ic.mu.Lock()
	ic.runs[handleKey(h)] = run
	ic.mu.Unlock()
	return h, nil
}

// Stop ends an interception: the link is pointed back at its upstream,
// then the listener and its connections are closed. Stopping one that has
// already ended is not an error.
func (ic *Interceptor) Stop(ctx context.Context, h Handle) error {
	err := network.Remove(ctx, h)
	ic.mu.Lock()
	run := ic.runs[handleKey(h)]
	if err == nil {
		delete(ic.runs, handleKey(h))
	}
	ic.mu.Unlock()
	if err != nil {
		return fmt.Errorf("end interception %s: %w", h.ID, err)
	}
	if run != nil {
		run.stop()
	}
	return nil
}

// Active reports whether h's interception is still running.
func (ic *Interceptor) Active(h Handle) bool {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	_, ok := ic.runs[handleKey(h)]
	return ok
}

// Close stops every interception.
func (ic *Interceptor) Close(ctx context.Context) error {
	ic.mu.Lock()
	hs := make([]Handle, 0, len(ic.runs))
	for _, run := range ic.runs {
		hs = append(hs, run.handle)
	}
	ic.mu.Unlock()
	var errs []error
	for _, h := range hs {
		errs = append(errs, ic.Stop(ctx, h))
	}
	return errors.Join(errs...)
}

// serve accepts diverted connections until the interception stops.
func (run *interception) serve() {
	defer run.wg.Done()
	for {
		c, err := run.ln.Accept()
		if err != nil {
			return
		}
		if !run.track(c) {
			c.Close()
			return
		}
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			defer run.untrack(c)
			d := net.Dialer{Timeout: 5 * time.Second}
			up, err := d.DialContext(run.ctx, "tcp", run.upstream)
			if err != nil {
				return
			}
			if !run.track(up) {
				up.Close()
				return
			}
			defer run.untrack(up)
			run.handler(run.ctx, c, up)
		}()
	}
}

// track adds a connection to close at stop; false once stopped.
func (run *interception) track(c net.Conn) bool {
	run.mu.Lock()
	defer run.mu.Unlock()
	if run.conns == nil {
		return false
	}
	run.conns[c] = struct{}{}
	return true
}

// untrack closes a connection and forgets it.
func (run *interception) untrack(c net.Conn) {
	c.Close()
	run.mu.Lock()
	defer run.mu.Unlock()
	delete(run.conns, c)
}

// stop closes the listener and every connection, and waits for the
// handlers.
func (run *interception) stop() {
	run.timer.Stop()
	run.cancel()
	run.ln.Close()
	run.mu.Lock()
	for c := range run.conns {
		c.Close()
	}
	run.conns = nil
	run.mu.Unlock()
	run.wg.Wait()
}
