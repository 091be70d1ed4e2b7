// Package sdk is the one package a fault plugin's author imports. A plugin
// is a Go program named mailchaos-fault-NAME whose main calls [Serve] with
// an [Injector]; mailchaos finds it (./plugins.d, $MAILCHAOS_PLUGIN_PATH,
// the user's config directory), starts it and calls it over gRPC.
//
// The SDK gives an author:
//   - the contract: [Injector], [Request], [Handle], [Status], [Spec];
//   - parameter schemas and their checking: [Param], [Check], [Values];
//   - the target: its endpoints, its links and the toxiproxy API that owns
//     them ([Toxiproxy]), with ready-made link faults ([LinkFault]) and
//     stream faults in Go code ([Interceptor]);
//   - structured logging that reaches mailchaos' log ([Logger]);
//   - safety: a panic in the injector becomes an error of kind PANIC, and
//     when mailchaos dies the plugin removes every fault it still has in
//     place and exits.
//
// plugins/sdk/sdktest is the conformance kit to run in the plugin's tests.
package sdk

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/undo"
	"github.com/mailchaos/mailchaos/plugins/internal/wire"
)

// Version is the SDK's version. It is reported to mailchaos, which shows it
// in `mailchaos plugins list`.
const Version = "0.1.0"

// ProtocolVersion is the version of the wire contract this SDK speaks. A
// mailchaos speaking another version refuses the plugin, naming both.
const ProtocolVersion = wire.ProtocolVersion

// The contract, as mailchaos defines it (package faults).
type (
	// Injector is one fault family: Describe, Validate, Inject, Remove and
	// Status. Implementations must be safe for concurrent use, honour
	// ctx's deadline, end every fault by itself once its request's TTL has
	// passed, and make Remove idempotent.
	Injector = faults.Injector
	// Request asks for one fault.
	Request = faults.Request
	// Handle is what Inject returns and Remove takes; plain data.
	Handle = faults.Handle
	// ToxicRef names a toxic a handle owns.
	ToxicRef = faults.ToxicRef
	// Status is an injected fault's state.
	Status = faults.Status
	// Target is the system under test: endpoints, links, users and the
	// toxiproxy API.
	Target = faults.Target
	// Link is a proxied hop of the target.
	Link = faults.Link
	// Spec is a fault's name, summary and parameter schema.
	Spec = faults.Spec
	// Param is one parameter of a schema.
	Param = faults.Param
	// Type is a parameter's type.
	Type = faults.Type
	// Params are parameter values as the user wrote them.
	Params = faults.Params
	// Values are checked parameters with typed accessors.
	Values = faults.Values
	// ParamError is an invalid parameter; mailchaos shows it at the
	// parameter's line and column in the experiment file.
	ParamError = faults.ParamError
	// RollbackError is a fault that could not be removed.
	RollbackError = faults.RollbackError
)

// Parameter types.
const (
	TypeString   = faults.TypeString
	TypeInt      = faults.TypeInt
	TypeFloat    = faults.TypeFloat
	TypeFraction = faults.TypeFraction
	TypeBool     = faults.TypeBool
	TypeDuration = faults.TypeDuration
	TypeSize     = faults.TypeSize
	TypeRate     = faults.TypeRate
	TypeEnum     = faults.TypeEnum
)

// Check validates params against spec: unknown names (with the nearest
// valid one suggested), missing required ones, types, ranges and enums.
// The error joins one [*ParamError] per problem.
func Check(spec Spec, params Params) (Values, error) {
	v, errs := faults.Check(spec, params)
	return v, errors.Join(errs...)
}

// Suggest returns `; did you mean "x"?` for the valid name closest to got,
// or "".
func Suggest(got string, valid []string) string { return faults.Suggest(got, valid) }

// logOut is the plugin's standard error as it was at start: go-plugin
// replaces os.Stderr once serving, and mailchaos reads the original line
// by line into its own log.
var logOut = os.Stderr //nolint:gochecknoglobals // captured before Serve swaps os.Stderr

// Logger returns a structured logger whose records reach mailchaos' log at
// their level, tagged with the plugin's name. Standard output and error
// also reach it, as plain lines; never write to standard output before
// Serve (it would break the handshake).
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				lvl, _ := a.Value.Any().(slog.Level)
				name := "info"
				switch {
				case lvl < slog.LevelInfo:
					name = "debug"
				case lvl >= slog.LevelError:
					name = "error"
				case lvl >= slog.LevelWarn:
					name = "warn"
				}
				return slog.String("@level", name)
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			if a.Value.Kind() == slog.KindDuration {
				return slog.String(a.Key, a.Value.Duration().String())
			}
			return a
		},
	}))
}

// Serve serves inj to mailchaos until mailchaos stops the plugin, then
// returns. Call it from main, and print nothing to standard output before.
// Run by hand, it says that it is a plugin and exits with status 1.
//
// Whatever happens to mailchaos, the plugin's faults do not outlive it: on
// SIGTERM (sent by the kernel when mailchaos dies, on Linux) or when the
// plugin's parent process changes, every fault still in place is removed
// and the plugin exits.
func Serve(inj Injector) {
	// When mailchaos dies, the pipes of the plugin's standard error and
	// output break: a write must then fail, not kill the plugin before it
	// has removed its faults.
	signal.Ignore(syscall.SIGPIPE)
	log := Logger()
	t := &tracker{inj: inj, live: map[string]Handle{}, pending: map[string]Request{}}
	done := make(chan struct{})
	defer close(done)
	go t.guard(done, log)
	wire.Serve(&wire.Plugin{Impl: inj, SDKVersion: Version, OnInject: t.add, OnRemove: t.drop, OnRequest: t.request, PanicLog: logOut},
		ProtocolVersion, logOut)
	t.removeAll(log, "mailchaos stopped the plugin")
}

// tracker keeps the faults the plugin has in place, to remove them when
// mailchaos is gone.
type tracker struct {
	inj  Injector
	mu   sync.Mutex
	live map[string]Handle
	// pending are the injections under way: known before anything of
	// them exists, so that what one created before mailchaos died is
	// removed too (its toxics carry its owner and ID).
	pending map[string]Request
}

func requestKey(r Request) string { return r.Owner + "/" + r.ID }

// request notes an injection before it starts; the function it returns
// forgets it once it has ended (a handle then tracks the fault).
func (t *tracker) request(r Request) func(bool) {
	t.mu.Lock()
	t.pending[requestKey(r)] = r
	t.mu.Unlock()
	return func(bool) {
		t.mu.Lock()
		delete(t.pending, requestKey(r))
		t.mu.Unlock()
	}
}

func handleKey(h Handle) string { return h.Owner + "/" + h.ID }

func (t *tracker) add(h Handle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live[handleKey(h)] = h
}

func (t *tracker) drop(h Handle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, handleKey(h))
}

// removeAll removes every fault still in place (those past their expiry
// have ended by themselves and are skipped).
func (t *tracker) removeAll(log *slog.Logger, why string) {
	t.mu.Lock()
	hs := make([]Handle, 0, len(t.live))
	for k, h := range t.live {
		if h.Expires.IsZero() || time.Now().Before(h.Expires) {
			hs = append(hs, h)
		}
		delete(t.live, k)
	}
	reqs := make([]Request, 0, len(t.pending))
	for k, r := range t.pending {
		reqs = append(reqs, r)
		delete(t.pending, k)
	}
	t.mu.Unlock()
	if len(reqs) > 0 {
		// Injections still under way: whatever toxics they made so far.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, r := range reqs {
			intent := faults.Intent(r)
			if _, err := undo.Undo(ctx, intent, undo.Options{Named: true}); err != nil {
				log.Error("removing what an injection under way made", "id", r.ID, "err", err)
			}
		}
		cancel()
	}
	if len(hs) == 0 {
		return
	}
	log.Warn("removing faults still in place", "why", why, "count", len(hs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range hs {
		if err := safeRemove(ctx, t.inj, h); err != nil {
			log.Error("removing fault", "id", h.ID, "err", err)
		}
	}
}

// safeRemove is inj.Remove with a panic turned into an error.
func safeRemove(ctx context.Context, inj Injector, h Handle) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("remove panicked")
		}
	}()
	return inj.Remove(ctx, h)
}

// guard removes the faults and exits when mailchaos is gone: on SIGTERM,
// or when the parent process changes (mailchaos died and the plugin was
// re-parented).
func (t *tracker) guard(done <-chan struct{}, log *slog.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	parent := os.Getppid()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-sigs:
			t.removeAll(log, "SIGTERM")
			os.Exit(0)
		case <-tick.C:
			if os.Getppid() != parent {
				t.removeAll(log, "mailchaos is gone")
				os.Exit(0)
			}
		}
	}
}
