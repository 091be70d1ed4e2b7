package experiments

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
)

// linkToxics is an injector that says exactly which toxic types a request
// adds on each link ([network.LinkInjector]). An injector without it (a
// plugin) is taken at its spec's word: [faults.Spec.ToxicsFor].
type linkToxics interface {
	LinkToxics(ctx context.Context, req faults.Request) (map[string][]string, error)
}

// ToxicsError is a fault that needs a toxic type a toxiproxy server of the
// target does not have: stock toxiproxy has none of mailchaos' own. It is
// found before anything is injected, and is the input's fault (exit 2).
type ToxicsError struct {
	// Step names the step ("method[1]"; "inject" for `mailchaos inject`).
	Step string
	// Fault is the fault's name.
	Fault string
	// Type is the toxic type the server lacks.
	Type string
	// Server is the toxiproxy API that lacks it.
	Server string
	// Links are the links of the step on that server.
	Links []string
}

func (e *ToxicsError) Error() string {
	on := ""
	switch len(e.Links) {
	case 0:
	case 1:
		on = " (link " + e.Links[0] + ")"
	default:
		on = " (links " + strings.Join(e.Links, ", ") + ")"
	}
	return fmt.Sprintf("%s: fault %s needs the toxic type %s, which the toxiproxy server at %s%s does not have "+
		"(stock toxiproxy has none of mailchaos' own toxics): run `mailchaos proxy serve` there instead", e.Step, e.Fault, e.Type, e.Server, on)
}

// InvalidInput marks the error as the input's (exit 2).
func (e *ToxicsError) InvalidInput() bool { return true }

// ToxicProbe finds out which toxic types toxiproxy servers have, once per
// server and type ([network.Client.ProbeToxics]); one run uses one. Safe
// for concurrent use.
type ToxicProbe struct {
	mu    sync.Mutex
	known map[string]map[string]bool // by server, by type
}

// NewToxicProbe returns a probe that knows nothing yet.
func NewToxicProbe() *ToxicProbe { return &ToxicProbe{known: map[string]map[string]bool{}} }

// Lacks returns those of types that server does not have, probing the
// types not asked about before.
func (p *ToxicProbe) Lacks(ctx context.Context, server string, types []string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	known := p.known[server]
	if known == nil {
		known = map[string]bool{}
		p.known[server] = known
	}
	var unknown []string
	for _, t := range types {
		if _, ok := known[t]; !ok {
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		got, err := network.NewClient(server).ProbeToxics(ctx, unknown)
		if err != nil {
			return nil, fmt.Errorf("toxiproxy %s: %w", server, err)
		}
		for t, ok := range got {
			known[t] = ok
		}
	}
	var lacks []string
	for _, t := range types {
		if !known[t] {
			lacks = append(lacks, t)
		}
	}
	return lacks, nil
}

// CheckToxics checks that the toxiproxy server of each link req puts its
// fault on has every toxic type the fault adds there, before anything is
// injected. It returns a [*ToxicsError] for the first type missing; step
// names the step in it.
func CheckToxics(ctx context.Context, probe *ToxicProbe, inj faults.Injector, spec faults.Spec, req faults.Request, step string) error {
	need, err := toxicsByServer(ctx, inj, spec, req)
	if err != nil {
		return fmt.Errorf("%s: fault %s: %w", step, spec.Name, err)
	}
	for _, server := range slices.Sorted(maps.Keys(need)) {
		lacks, err := probe.Lacks(ctx, server, need[server].types)
		if err != nil {
			return fmt.Errorf("%s: fault %s: %w", step, spec.Name, err)
		}
		if len(lacks) > 0 {
			return &ToxicsError{Step: step, Fault: spec.Name, Type: lacks[0], Server: server, Links: need[server].links}
		}
	}
	return nil
}

// serverNeeds are the toxic types a request adds on one server, and the
// links they go on.
type serverNeeds struct {
	types []string
	links []string
}

// toxicsByServer says which toxic types req adds on which server.
func toxicsByServer(ctx context.Context, inj faults.Injector, spec faults.Spec, req faults.Request) (map[string]*serverNeeds, error) {
	out := map[string]*serverNeeds{}
	add := func(server, link string, types []string) {
		if server == "" || len(types) == 0 {
			return
		}
		n := out[server]
		if n == nil {
			n = &serverNeeds{}
			out[server] = n
		}
		for _, t := range types {
			if !slices.Contains(n.types, t) {
				n.types = append(n.types, t)
			}
		}
		if link != "" && !slices.Contains(n.links, link) {
			n.links = append(n.links, link)
		}
	}
	if lt, ok := inj.(linkToxics); ok {
		byLink, err := lt.LinkToxics(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, link := range slices.Sorted(maps.Keys(byLink)) {
			add(req.Target.Server(link), link, byLink[link])
		}
		return out, nil
	}
	types := spec.ToxicsFor(req.Params)
	if len(req.Links) == 0 {
		// The fault picks its links itself: any server may get them.
		for _, s := range req.Target.Servers() {
			add(s, "", types)
		}
		return out, nil
	}
	for _, l := range req.Links {
		add(req.Target.Server(l), l, types)
	}
	return out, nil
}

// preflight checks, before the baseline, that the target's toxiproxy
// servers have every toxic type the method's faults add (see
// [CheckToxics]): a fault that would be refused half-way through a run
// fails it before anything is hurt.
func (r *runner) preflight(ctx context.Context) error {
	probe := NewToxicProbe()
	for i, st := range r.exp.Method {
		inj, spec, err := r.opts.Catalog.Faults.Get(st.Fault)
		if err != nil {
			return err
		}
		if err := CheckToxics(ctx, probe, inj, spec, r.request(i), fmt.Sprintf("method[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}
