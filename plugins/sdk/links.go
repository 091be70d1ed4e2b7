package sdk

import (
	"context"

	"github.com/mailchaos/mailchaos/faults/network"
)

// Link faults are toxics on the target's links, named after the request's
// owner and ID and its expiry, so that mailchaos can always find and remove
// them: when the plugin dies, the host removes them; when everything dies,
// the toxiproxy server mailchaos runs removes them at their expiry.
type (
	// LinkFault is an [Injector] whose faults are toxics on links: give it
	// a Spec and a Plan (which toxics a request means on each link) and it
	// does Validate, Inject, Remove and Status.
	LinkFault = network.LinkInjector
	// Toxic is one toxic to add on a link: a toxiproxy toxic type (latency,
	// bandwidth, slow_close, timeout, reset_peer, slicer, limit_data) or
	// one of mailchaos' (mailchaos_blackhole, mailchaos_stall,
	// mailchaos_drip, ...), with its stream and attributes.
	Toxic = network.ToxicOn
	// ToxiproxyClient is a client of the toxiproxy API that owns the
	// target's links.
	ToxiproxyClient = network.Client
)

// ToxicDivert is the type of the toxic an [Interceptor] records a diverted
// link with: a fault that intercepts links says so in [Spec].Toxics, so
// that a run on a server without mailchaos' toxics (stock toxiproxy) is
// refused before it starts.
const ToxicDivert = network.ToxicDivert

// Streams a toxic can sit on.
const (
	// Upstream is the client-to-server direction.
	Upstream = network.Upstream
	// Downstream is the server-to-client direction.
	Downstream = network.Downstream
)

// Toxiproxy returns a client of the target's toxiproxy API: that of the
// links that name none of their own.
func Toxiproxy(t Target) *ToxiproxyClient { return network.NewClient(t.Toxiproxy) }

// LinkToxiproxy returns a client of the toxiproxy API that owns the named
// link: a target's links may live on many servers ([Target.Server]).
func LinkToxiproxy(t Target, link string) *ToxiproxyClient {
	return network.NewClient(t.Server(link))
}

// AddToxics adds toxics for req, named after its owner, ID and expiry,
// and returns the handle that removes them. If one cannot be added, those
// already added are removed.
func AddToxics(ctx context.Context, req Request, toxics []Toxic) (Handle, error) {
	return network.Apply(ctx, req, toxics)
}

// RemoveToxics removes a handle's toxics; removing toxics already gone is
// not an error.
func RemoveToxics(ctx context.Context, h Handle) error { return network.Remove(ctx, h) }

// ToxicsActive reports whether any of a handle's toxics is still in place.
func ToxicsActive(ctx context.Context, h Handle) (bool, error) { return network.Active(ctx, h) }

// CheckLinks returns a [*ParamError] for the "link" parameter when links
// is empty or names a link the target does not have.
func CheckLinks(fault string, t Target, links []string) error {
	return network.CheckLinks(fault, t, links)
}
