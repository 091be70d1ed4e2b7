package network

import (
	"context"
	"errors"
	"slices"

	"github.com/mailchaos/mailchaos/faults"
)

// LinkInjector is a [faults.Injector] whose faults are toxics on links. The
// fault families built on it only say which toxics a request means.
type LinkInjector struct {
	// Spec is the fault's description and parameter schema.
	Spec faults.Spec
	// DefaultLinks picks the links when a request names none; nil means a
	// link is required.
	DefaultLinks func(t faults.Target) []string
	// Check validates what the schema cannot (combinations of parameters);
	// it may be nil.
	Check func(v faults.Values) error
	// Plan turns validated parameters into toxics for each link.
	Plan func(v faults.Values, link string) []ToxicOn
}

var _ faults.Injector = (*LinkInjector)(nil)

// Describe returns the spec.
func (li *LinkInjector) Describe(context.Context) (faults.Spec, error) { return li.Spec, nil }

// Validate checks parameters and links.
func (li *LinkInjector) Validate(_ context.Context, req faults.Request) error {
	_, err := li.check(req)
	return err
}

func (li *LinkInjector) check(req faults.Request) (faults.Values, error) {
	v, errs := faults.Check(li.Spec, req.Params)
	if len(errs) == 0 && li.Check != nil {
		if err := li.Check(v); err != nil {
			errs = append(errs, err)
		}
	}
	// Links are checked once the target is known (it has a toxiproxy).
	if len(req.Target.Servers()) > 0 {
		if err := CheckLinks(li.Spec.Name, req.Target, li.links(req)); err != nil {
			errs = append(errs, err)
		}
	}
	return v, errors.Join(errs...)
}

func (li *LinkInjector) links(req faults.Request) []string {
	if len(req.Links) == 0 && li.DefaultLinks != nil {
		return li.DefaultLinks(req.Target)
	}
	return req.Links
}

// LinkToxics returns the toxic types the request would add on each link
// it puts the fault on, by link name: exactly what Inject would ask the
// links' servers for.
func (li *LinkInjector) LinkToxics(_ context.Context, req faults.Request) (map[string][]string, error) {
	v, err := li.check(req)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, l := range li.links(req) {
		for _, t := range li.Plan(v, l) {
			if !slices.Contains(out[l], t.Type) {
				out[l] = append(out[l], t.Type)
			}
		}
	}
	return out, nil
}

// Inject validates the request and adds its toxics.
func (li *LinkInjector) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	v, err := li.check(req)
	if err != nil {
		return faults.Handle{}, err
	}
	var toxics []ToxicOn
	for _, l := range li.links(req) {
		toxics = append(toxics, li.Plan(v, l)...)
	}
	return Apply(ctx, req, toxics)
}

// Remove removes the handle's toxics; idempotent.
func (li *LinkInjector) Remove(ctx context.Context, h faults.Handle) error { return Remove(ctx, h) }

// Status reports whether the handle's toxics are still in place.
func (li *LinkInjector) Status(ctx context.Context, h faults.Handle) (faults.Status, error) {
	active, err := Active(ctx, h)
	return faults.Status{Active: active}, err
}
