package sdktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/faults/undo"
	"github.com/mailchaos/mailchaos/plugins/internal/wire"
	"github.com/mailchaos/mailchaos/plugins/sdk"
)

// Overlap says what a plugin does with a second fault on a link that
// already has one of its own.
type Overlap int

const (
	// Stack: both faults are in place together, and each is removed on its
	// own.
	Stack Overlap = iota
	// Refuse: the second inject fails, and the first fault is unaffected.
	Refuse
)

// Config is what the kit needs to know about the plugin.
type Config struct {
	// Params are valid parameters for an inject on the kit's target.
	Params sdk.Params
	// Link is the link injects go on, for faults that need one; the
	// default is [LinkA].
	Link string
	// BadParams are more invalid values to try, by parameter name, on top
	// of those the kit derives from each parameter's type.
	BadParams map[string]string
	// SecondInject is what the plugin does with a second fault on the same
	// link.
	SecondInject Overlap
	// TTL of the kit's requests; the default is a minute.
	TTL time.Duration
}

// Run checks inj against the contract, each point a subtest:
//   - describe: the spec is well-formed (a name, a summary, every
//     parameter typed and documented, defaults valid);
//   - bad-params: invalid values (derived from each parameter's type, and
//     cfg.BadParams) and unknown names are rejected with the parameter
//     named;
//   - inject-remove: inject puts the fault in place, with every toxic
//     named after the request's owner and ID (so that mailchaos can remove
//     them if the plugin dies), and remove leaves the link clean: no
//     toxic, its upstream restored, traffic flowing;
//   - remove-idempotent: removing twice, or removing a fault never
//     injected, is not an error;
//   - deadline: inject answers within its deadline (a short one), and
//     whatever it did is removable;
//   - second-inject: a second fault on the same link is handled as
//     cfg.SecondInject says.
//
// Calls cross the real gRPC boundary (in-process) against a real toxiproxy
// server with mailchaos' toxics, in front of an echo server.
func Run(t *testing.T, inj sdk.Injector, cfg Config) {
	tg := StartTarget(t)
	f := connect(t, inj)
	spec, _, err := f.Describe(context.Background())
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if cfg.Link == "" {
		cfg.Link = LinkA
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	k := &kit{t: t, f: f, tg: tg, spec: spec, cfg: cfg}
	t.Run("describe", k.describe)
	t.Run("bad-params", k.badParams)
	t.Run("inject-remove", k.injectRemove)
	t.Run("remove-idempotent", k.removeIdempotent)
	t.Run("deadline", k.deadline)
	t.Run("second-inject", k.secondInject)
}

// remote calls an injector over gRPC as mailchaos does.
type remote struct{ c *wire.Client }

// connect serves inj over a real gRPC connection on loopback.
func connect(t *testing.T, inj sdk.Injector) *remote {
	t.Helper()
	p := &wire.Plugin{Impl: inj}
	conn, srv := plugin.TestGRPCConn(t, func(s *grpc.Server) { _ = p.GRPCServer(nil, s) })
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	raw, err := p.GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatalf("sdktest: client: %v", err)
	}
	return &remote{c: raw.(*wire.Client)}
}

func (r *remote) Describe(ctx context.Context) (sdk.Spec, string, error) {
	ctx, cancel := wire.HostDeadline(ctx)
	defer cancel()
	return r.c.Describe(ctx)
}

func (r *remote) Validate(ctx context.Context, req sdk.Request) error {
	ctx, cancel := wire.HostDeadline(ctx)
	defer cancel()
	return r.c.Validate(ctx, req)
}

func (r *remote) Inject(ctx context.Context, req sdk.Request) (sdk.Handle, error) {
	ctx, cancel := wire.HostDeadline(ctx)
	defer cancel()
	return r.c.Inject(ctx, req)
}

func (r *remote) Remove(ctx context.Context, h sdk.Handle) error {
	ctx, cancel := wire.HostDeadline(ctx)
	defer cancel()
	return r.c.Remove(ctx, h)
}

func (r *remote) Status(ctx context.Context, h sdk.Handle) (sdk.Status, error) {
	ctx, cancel := wire.HostDeadline(ctx)
	defer cancel()
	return r.c.Status(ctx, h)
}

type kit struct {
	t    *testing.T
	f    *remote
	tg   *Target
	spec sdk.Spec
	cfg  Config
	n    int
}

// request is a valid request with a fresh ID.
func (k *kit) request() sdk.Request {
	k.n++
	req := sdk.Request{ID: fmt.Sprintf("c%d", k.n), Owner: "sdktest", Fault: k.spec.Name,
		Target: k.tg.Target, Params: sdk.Params{}, Duration: k.cfg.TTL / 2, TTL: k.cfg.TTL}
	for n, v := range k.cfg.Params {
		req.Params[n] = v
	}
	if k.spec.NeedsLink {
		req.Links = []string{k.cfg.Link}
	}
	return req
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

func (k *kit) describe(t *testing.T) {
	s := k.spec
	if !validName.MatchString(s.Name) {
		t.Errorf("name %q: want lower-case letters, digits and dashes, starting with a letter", s.Name)
	}
	if s.Summary == "" {
		t.Error("the spec has no summary")
	}
	types := []sdk.Type{sdk.TypeString, sdk.TypeInt, sdk.TypeFloat, sdk.TypeFraction, sdk.TypeBool, sdk.TypeDuration, sdk.TypeSize, sdk.TypeRate, sdk.TypeEnum}
	seen := map[string]bool{}
	for _, p := range s.Params {
		switch {
		case p.Name == "" || !validName.MatchString(p.Name):
			t.Errorf("parameter %q: want lower-case letters, digits and dashes", p.Name)
		case seen[p.Name]:
			t.Errorf("parameter %s is declared twice", p.Name)
		case !slices.Contains(types, p.Type):
			t.Errorf("parameter %s: type %q is not one of %v", p.Name, p.Type, types)
		case p.Doc == "":
			t.Errorf("parameter %s has no doc", p.Name)
		case p.Type == sdk.TypeEnum && len(p.Enum) == 0:
			t.Errorf("enum parameter %s lists no values", p.Name)
		}
		seen[p.Name] = true
		if p.Default != "" {
			if _, err := sdk.Check(s, sdk.Params{p.Name: p.Default}); namesParam(err, p.Name) {
				t.Errorf("parameter %s: its default %q is invalid: %v", p.Name, p.Default, err)
			}
		}
	}
	if err := k.f.Validate(context.Background(), k.request()); err != nil {
		t.Errorf("the kit's valid request (cfg.Params) is refused: %v", err)
	}
}

// invalid returns a value no parameter of type p.Type accepts, or "".
func invalid(p sdk.Param) string {
	switch p.Type {
	case sdk.TypeInt:
		return "one"
	case sdk.TypeFloat:
		return "many"
	case sdk.TypeFraction:
		return "150%"
	case sdk.TypeBool:
		return "maybe"
	case sdk.TypeDuration:
		return "soon"
	case sdk.TypeSize:
		return "huge"
	case sdk.TypeRate:
		return "fast"
	case sdk.TypeEnum:
		return "no-such-choice"
	}
	return ""
}

// namesParam reports whether err has a ParamError naming param.
func namesParam(err error, param string) bool {
	for _, e := range faults.Flatten(err) {
		var pe *sdk.ParamError
		if errors.As(e, &pe) && pe.Param == param {
			return true
		}
	}
	return false
}

func (k *kit) badParams(t *testing.T) {
	cases := map[string]string{}
	for _, p := range k.spec.Params {
		if v := invalid(p); v != "" {
			cases[p.Name] = v
		}
	}
	for n, v := range k.cfg.BadParams {
		cases[n] = v
	}
	for _, n := range slices.Sorted(maps.Keys(cases)) {
		req := k.request()
		req.Params[n] = cases[n]
		err := k.f.Validate(context.Background(), req)
		if !namesParam(err, n) {
			t.Errorf("parameter %s = %q: want an error naming the parameter, got %v", n, cases[n], err)
		}
		if _, ierr := k.f.Inject(context.Background(), req); ierr == nil {
			t.Errorf("parameter %s = %q: inject accepted it", n, cases[n])
		}
	}
	req := k.request()
	req.Params["no-such-param"] = "1"
	if err := k.f.Validate(context.Background(), req); !namesParam(err, "no-such-param") {
		t.Errorf("an unknown parameter: want an error naming it, got %v", err)
	}
	k.assertClean(t)
}

// assertClean checks that no link has a toxic or a changed upstream, and
// that traffic flows on every link.
func (k *kit) assertClean(t *testing.T) {
	t.Helper()
	for _, l := range k.tg.Links {
		if ts := k.tg.Toxics(t, l.Name); len(ts) > 0 {
			t.Errorf("link %s still has toxics: %v", l.Name, ts)
		}
		if up := k.tg.Upstream(t, l.Name); up != l.Upstream {
			t.Errorf("link %s forwards to %s, not its upstream %s", l.Name, up, l.Upstream)
		}
		if err := k.tg.RoundTrip(l.Name, 10*time.Second); err != nil {
			t.Errorf("link %s does not carry traffic: %v", l.Name, err)
		}
	}
}

// assertNamed checks that every toxic on the links belongs to the kit's
// requests, named after owner and ID as mailchaos needs to clean up.
func (k *kit) assertNamed(t *testing.T, req sdk.Request) {
	t.Helper()
	for _, l := range k.tg.Links {
		for _, x := range k.tg.Toxics(t, l.Name) {
			info, ok := network.ParseToxicName(x.Name)
			if !ok || info.Owner != req.Owner {
				t.Errorf("toxic %s on %s is not named after its request (want the name sdk.AddToxics gives): mailchaos could not remove it if the plugin died", x.Name, l.Name)
			}
		}
	}
}

func (k *kit) injectRemove(t *testing.T) {
	ctx := context.Background()
	req := k.request()
	h, err := k.f.Inject(ctx, req)
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	if h.ID != req.ID || h.Owner != req.Owner {
		t.Errorf("handle %s/%s: want the request's owner and ID %s/%s", h.Owner, h.ID, req.Owner, req.ID)
	}
	if h.Expires.IsZero() || h.Expires.After(time.Now().Add(req.TTL+time.Second)) {
		t.Errorf("handle expires at %v: want by the request's TTL (%s)", h.Expires, req.TTL)
	}
	k.assertNamed(t, req)
	st, err := k.f.Status(ctx, h)
	if err != nil || !st.Active {
		t.Errorf("status after inject: %+v, %v: want active", st, err)
	}
	if err := k.f.Remove(ctx, h); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st, err = k.f.Status(ctx, h)
	if err != nil || st.Active {
		t.Errorf("status after remove: %+v, %v: want not active", st, err)
	}
	k.assertClean(t)
}

func (k *kit) removeIdempotent(t *testing.T) {
	ctx := context.Background()
	h, err := k.f.Inject(ctx, k.request())
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	if err := k.f.Remove(ctx, h); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := k.f.Remove(ctx, h); err != nil {
		t.Errorf("a second remove: %v", err)
	}
	never := h
	never.ID = "never-injected"
	for i := range never.Toxics {
		never.Toxics[i].Name = network.ToxicName(never.Owner, never.ID, never.Expires, i)
	}
	if err := k.f.Remove(ctx, never); err != nil {
		t.Errorf("removing a fault never injected: %v", err)
	}
	k.assertClean(t)
}

func (k *kit) deadline(t *testing.T) {
	req := k.request()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	h, err := k.f.Inject(ctx, req)
	if _, isRPC := status.FromError(err); err != nil && isRPC {
		t.Errorf("inject with a short deadline did not answer within it (plus %s): %v", wire.DeadlineGrace, err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err == nil {
		if err := k.f.Remove(rctx, h); err != nil {
			t.Errorf("remove: %v", err)
		}
	} else if _, err := undo.Undo(rctx, faults.Intent(req), undo.Options{Named: true}); err != nil {
		t.Errorf("clean up: %v", err)
	}
	k.assertClean(t)
}

func (k *kit) secondInject(t *testing.T) {
	ctx := context.Background()
	first, err := k.f.Inject(ctx, k.request())
	if err != nil {
		t.Fatalf("first inject: %v", err)
	}
	second, err := k.f.Inject(ctx, k.request())
	switch k.cfg.SecondInject {
	case Refuse:
		if err == nil {
			t.Errorf("a second inject on link %s succeeded; the config says it is refused", k.cfg.Link)
			_ = k.f.Remove(ctx, second)
		}
		if st, serr := k.f.Status(ctx, first); serr != nil || !st.Active {
			t.Errorf("the first fault after a refused second one: %+v, %v: want active", st, serr)
		}
	default:
		if err != nil {
			t.Fatalf("a second inject on link %s: %v (set Config.SecondInject to Refuse if that is by design)", k.cfg.Link, err)
		}
		if err := k.f.Remove(ctx, second); err != nil {
			t.Errorf("remove the second: %v", err)
		}
		if st, serr := k.f.Status(ctx, first); serr != nil || !st.Active {
			t.Errorf("the first fault after removing the second: %+v, %v: want still active", st, serr)
		}
	}
	if err := k.f.Remove(ctx, first); err != nil {
		t.Errorf("remove the first: %v", err)
	}
	k.assertClean(t)
}
