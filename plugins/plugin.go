package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/undo"
	"github.com/mailchaos/mailchaos/plugins/internal/wire"
)

// cleanupTimeout bounds the host's removal of a lost plugin's faults.
const cleanupTimeout = 10 * time.Second

// Plugin is a running plugin, used as a [faults.Injector]. It remembers
// every fault it was asked to inject until the fault is removed, so that if
// the plugin dies or hangs the host can remove them itself.
type Plugin struct {
	launch     Launch
	spec       faults.Spec
	sdkVersion string
	timeout    time.Duration
	log        *slog.Logger

	client *plugin.Client
	proc   *proc // set by go-plugin's call of runnerFunc
	rpc    *wire.Client
	pid    int

	// kill ends at a second signal; giveUp KillGrace later (Options.Kill).
	kill, giveUp context.Context

	mu   sync.Mutex
	live map[string]*tracked // by owner/id: faults not yet removed

	closing   atomic.Bool
	lostOnce  sync.Once
	lostErr   error
	lost      chan struct{}
	stopWatch chan struct{}
	stopOnce  sync.Once
	watchDone chan struct{}
}

// tracked is one fault the plugin was asked for.
type tracked struct {
	req    faults.Request
	handle *faults.Handle // nil until Inject returned one
}

var _ faults.Injector = (*Plugin)(nil)

// Name is the fault the plugin serves.
func (p *Plugin) Name() string { return p.launch.Name }

// Path is the plugin's executable.
func (p *Plugin) Path() string { return p.launch.Path }

// Builtin reports whether the plugin is one of mailchaos' own faults.
func (p *Plugin) Builtin() bool { return p.launch.Builtin }

// SDKVersion is the version of the SDK the plugin was built with.
func (p *Plugin) SDKVersion() string { return p.sdkVersion }

// Pid is the plugin's process ID.
func (p *Plugin) Pid() int { return p.pid }

// Lost is closed once the plugin has died or been killed for hanging, and
// the host has removed its faults. [Plugin.LostErr] says why.
func (p *Plugin) Lost() <-chan struct{} { return p.lost }

// LostErr is a [*LostError] once [Plugin.Lost] is closed, nil before.
func (p *Plugin) LostErr() error {
	select {
	case <-p.lost:
		return p.lostErr
	default:
		return nil
	}
}

// LostError is a plugin that died during the run, or was killed because a
// call hung. Its faults were removed by the host (Cleanup says how that
// went).
type LostError struct {
	Plugin string
	Pid    int
	// Cause is what happened: the process exited, or a call hung.
	Cause error
	// Removed counts the toxics the host removed in its place.
	Removed int
	// CleanupErr is set if the host could not remove everything.
	CleanupErr error
}

func (e *LostError) Error() string {
	msg := fmt.Sprintf("plugin %s (pid %d) %v", e.Plugin, e.Pid, e.Cause)
	if e.CleanupErr != nil {
		return msg + fmt.Sprintf("; removing its faults failed: %v", e.CleanupErr)
	}
	return msg + fmt.Sprintf("; mailchaos removed its faults itself (%d toxics)", e.Removed)
}

func (e *LostError) Unwrap() error { return e.Cause }

// CallError is a call a plugin failed to answer because of the plugin: it
// crashed during the call, or did not answer in time.
type CallError struct {
	Plugin string
	Call   string
	Err    error
}

func (e *CallError) Error() string { return fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Call, e.Err) }

func (e *CallError) Unwrap() error { return e.Err }

// ErrHung is a call the plugin did not answer by its deadline.
var ErrHung = errors.New("the plugin did not answer in time")

// connect starts the process and dispenses the fault service.
func (p *Plugin) connect(ctx context.Context) error {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := p.client.Client()
		done <- result{rpc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		p.closing.Store(true)
		p.client.Kill()
		<-done
		return ctx.Err()
	}
	if r.err != nil {
		return r.err
	}
	raw, err := r.rpc.Dispense(wire.PluginKey)
	if err != nil {
		return fmt.Errorf("dispense: %w", err)
	}
	c, ok := raw.(*wire.Client)
	if !ok {
		return fmt.Errorf("dispense: unexpected %T", raw)
	}
	p.rpc = c
	if p.proc != nil {
		p.pid = p.proc.pid
	}
	return nil
}

// killProc kills the plugin's process group at once, if it was started.
func (p *Plugin) killProc() {
	if p.proc != nil && p.proc.pid > 0 {
		_ = p.proc.Kill(context.Background())
	}
}

// cleanupContext bounds the host's own removal of the plugin's faults:
// cleanupTimeout, and no later than KillGrace after a second signal.
func (p *Plugin) cleanupContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), cleanupTimeout)
	stop := context.AfterFunc(p.giveUp, cancel)
	return ctx, func() { stop(); cancel() }
}

// watch notices the process exiting when nobody asked it to.
func (p *Plugin) watch() {
	defer close(p.watchDone)
	select {
	case <-p.rpc.Exited():
		if !p.closing.Load() {
			p.fail(errors.New("exited unexpectedly"), false)
		}
	case <-p.stopWatch:
	}
}

// fail marks the plugin lost (once): it kills the process if asked, then
// removes every fault the plugin had in place, from the host.
func (p *Plugin) fail(cause error, kill bool) {
	p.lostOnce.Do(func() {
		if kill {
			p.killProc()
		}
		ctx, cancel := p.cleanupContext(context.Background())
		defer cancel()
		n, err := p.cleanup(ctx, p.takeLive())
		lerr := &LostError{Plugin: p.launch.Name, Pid: p.pid, Cause: cause, Removed: n, CleanupErr: err}
		p.log.Error("plugin lost", "err", lerr)
		p.lostErr = lerr
		close(p.lost)
	})
}

// takeLive removes and returns every tracked fault.
func (p *Plugin) takeLive() []*tracked {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*tracked, 0, len(p.live))
	for k, t := range p.live {
		out = append(out, t)
		delete(p.live, k)
	}
	return out
}

// cleanup removes faults from the host's side with [undo.Undo]: the
// toxics named after each fault's owner and ID (a diverted link is pointed
// back at its upstream), those its handle lists, and the restore call a
// handle names (an access site drained over HTTP: see
// [faults.DataUndoPost]). Faults without either (a load generator) end
// with the plugin's process.
func (p *Plugin) cleanup(ctx context.Context, ts []*tracked) (int, error) {
	var errs []error
	n := 0
	for _, t := range ts {
		h := faults.Handle{ID: t.req.ID, Fault: t.req.Fault, Owner: t.req.Owner}
		if t.handle != nil {
			// The toxics swept by name are the request's, whatever the
			// plugin's handle says.
			h = *t.handle
			h.ID, h.Owner = t.req.ID, t.req.Owner
		}
		// Every server of the target is swept, whatever the plugin's
		// handle says.
		intent := faults.Intent(t.req)
		if h.Toxiproxy == "" {
			h.Toxiproxy = intent.Toxiproxy
		}
		h.Servers = append(slices.Clone(h.Servers), intent.AllServers()...)
		k, err := undo.Undo(ctx, h, undo.Options{RemoteOK: undo.InTarget(h, t.req.Target), Named: true})
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// stop ends the plugin on purpose: faults still in place are removed by
// the host, then the process is asked to exit (and its process group
// killed after 2 s, or at once after a second signal).
func (p *Plugin) stop() {
	p.stopOnce.Do(func() {
		p.closing.Store(true)
		close(p.stopWatch)
		<-p.watchDone
		if ts := p.takeLive(); len(ts) > 0 {
			ctx, cancel := p.cleanupContext(context.Background())
			if n, err := p.cleanup(ctx, ts); err != nil {
				p.log.Error("removing the plugin's faults", "err", err)
			} else if n > 0 {
				p.log.Warn("removed faults the plugin still had in place", "toxics", n)
			}
			cancel()
		}
		if p.kill.Err() != nil {
			p.killProc()
		}
		p.client.Kill()
	})
}

// key identifies a fault among the plugin's.
func key(owner, id string) string { return owner + "/" + id }

// call runs one call under the plugin's timeout (or ctx's deadline, if
// sooner), with the deadline grace of the wire contract. A plugin that
// crashes or does not answer is lost: the call returns a [*CallError].
func (p *Plugin) call(ctx context.Context, name string, fn func(context.Context) error) error {
	if err := p.LostErr(); err != nil {
		return &CallError{Plugin: p.launch.Name, Call: name, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	gctx, gcancel := wire.HostDeadline(ctx)
	defer gcancel()
	err := fn(gctx)
	if err == nil {
		return nil
	}
	st, isRPC := status.FromError(err)
	if !isRPC {
		return err // the plugin's own answer
	}
	switch {
	case st.Code() == codes.Canceled && ctx.Err() != nil:
		return fmt.Errorf("plugin %s: %s: %w", p.launch.Name, name, context.Cause(ctx))
	case st.Code() == codes.DeadlineExceeded:
		p.fail(fmt.Errorf("hung: %s did not answer by its deadline (plus %s); it was killed", name, wire.DeadlineGrace), true)
		return &CallError{Plugin: p.launch.Name, Call: name, Err: errors.Join(ErrHung, p.lostErr)}
	}
	// The connection failed: the process died. Let the watcher see the
	// exit, then report it.
	select {
	case <-p.rpc.Exited():
	case <-time.After(time.Second):
	}
	p.fail(fmt.Errorf("crashed during %s: %s", name, st.Message()), true)
	return &CallError{Plugin: p.launch.Name, Call: name, Err: p.lostErr}
}

// describe asks the plugin for its spec.
func (p *Plugin) describe(ctx context.Context) (spec faults.Spec, sdk string, err error) {
	err = p.call(ctx, "describe", func(ctx context.Context) error {
		spec, sdk, err = p.rpc.Describe(ctx)
		return err
	})
	return spec, sdk, err
}

// Describe returns the plugin's spec, as it described itself at start.
func (p *Plugin) Describe(context.Context) (faults.Spec, error) { return p.spec, nil }

// Validate asks the plugin to check a request.
func (p *Plugin) Validate(ctx context.Context, req faults.Request) error {
	return p.call(ctx, "validate", func(ctx context.Context) error { return p.rpc.Validate(ctx, req) })
}

// Inject asks the plugin for a fault. The request is remembered before the
// call, so that a plugin dying half-way through still has its fault
// removed by the host.
func (p *Plugin) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	k := key(req.Owner, req.ID)
	t := &tracked{req: req}
	p.mu.Lock()
	p.live[k] = t
	p.mu.Unlock()
	var h faults.Handle
	err := p.call(ctx, "inject", func(ctx context.Context) (err error) {
		h, err = p.rpc.Inject(ctx, req)
		return err
	})
	var rb *faults.RollbackError
	isRollback := errors.As(err, &rb)
	p.mu.Lock()
	switch {
	case err == nil:
		t.handle = &h
	case isRollback:
		// It may still be in place: keep it, so the host removes it.
	default:
		delete(p.live, k)
	}
	p.mu.Unlock()
	// The plugin said it failed and should have undone what it did (if it
	// was lost, the host has cleaned up already). A plugin may be wrong
	// about that, having panicked half-way, so the host removes whatever
	// the request left behind all the same.
	if err != nil && !isRollback && p.LostErr() == nil {
		cctx, cancel := p.cleanupContext(ctx)
		defer cancel()
		if _, cerr := p.cleanup(cctx, []*tracked{t}); cerr != nil {
			err = errors.Join(err, &faults.RollbackError{Handle: faults.Intent(req), Err: cerr})
		}
	}
	return h, err
}

// Remove asks the plugin to end a fault. If the plugin is lost, the host
// has removed the fault itself, and Remove succeeds unless that failed.
func (p *Plugin) Remove(ctx context.Context, h faults.Handle) error {
	k := key(h.Owner, h.ID)
	if lerr := p.LostErr(); lerr != nil {
		return p.removeLost(ctx, h, lerr)
	}
	err := p.call(ctx, "remove", func(ctx context.Context) error { return p.rpc.Remove(ctx, h) })
	var ce *CallError
	switch {
	case err == nil:
		p.mu.Lock()
		delete(p.live, k)
		p.mu.Unlock()
		return nil
	case errors.As(err, &ce) && p.LostErr() != nil:
		return p.removeLost(ctx, h, p.LostErr())
	}
	return err
}

// removeLost removes a lost plugin's fault from the host's side; it is
// normally gone already (see fail).
func (p *Plugin) removeLost(ctx context.Context, h faults.Handle, lerr error) error {
	var le *LostError
	if errors.As(lerr, &le) && le.CleanupErr != nil {
		return &faults.RollbackError{Handle: h, Err: lerr}
	}
	if _, err := undo.Undo(ctx, h, undo.Options{Named: true}); err != nil {
		return &faults.RollbackError{Handle: h, Err: fmt.Errorf("%v; the host's removal failed: %w", lerr, err)}
	}
	return nil
}

// Status asks the plugin about a fault. A lost plugin's faults are not
// active.
func (p *Plugin) Status(ctx context.Context, h faults.Handle) (faults.Status, error) {
	if lerr := p.LostErr(); lerr != nil {
		return faults.Status{Active: false, Detail: lerr.Error()}, nil
	}
	var st faults.Status
	err := p.call(ctx, "status", func(ctx context.Context) (err error) {
		st, err = p.rpc.Status(ctx, h)
		return err
	})
	return st, err
}
