// Package avlatency is the av-latency fault: an anti-virus engine that turns
// slow, on every scan or only on the scans of matching (infected) mail, or
// that answers with errors, reproduced on the links between an MTA and its
// clamd engines.
package avlatency

import (
	"strings"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
)

// Name is the fault's name.
const Name = "av-latency"

// Modes.
const (
	ModeMatch      = "match"
	ModeLatency    = "latency"
	ModeError      = "error"
	ModeCloseAfter = "close-after"
)

// New returns the av-latency injector.
func New() *network.LinkInjector {
	return &network.LinkInjector{
		Spec: faults.Spec{
			Name:      Name,
			Summary:   "slow or failing anti-virus engine: latency on matching (infected) scans, on every scan, ERROR replies, or a connection cut after N bytes",
			NeedsLink: true,
			// match and error modes need mailchaos' own toxics; latency and
			// close-after use stock toxiproxy's.
			Toxics: []string{network.ToxicClamdLatency, "latency", network.ToxicClamdError, "limit_data"},
			Params: []faults.Param{
				{Name: "mode", Type: faults.TypeEnum, Default: ModeMatch, Enum: []string{ModeMatch, ModeLatency, ModeError, ModeCloseAfter},
					Toxics: map[string][]string{ModeMatch: {network.ToxicClamdLatency}, ModeLatency: {"latency"},
						ModeError: {network.ToxicClamdError}, ModeCloseAfter: {"limit_data"}},
					Doc: "match: delay only scans whose payload matches `match`; latency: delay every reply; error: every reply becomes an ERROR; close-after: cut the connection after `bytes` bytes from the MTA"},
				{Name: "latency", Type: faults.TypeDuration, Default: "5s", Min: "0s", Max: "1h", Unit: "duration",
					Doc: "added delay (match and latency modes)"},
				{Name: "jitter", Type: faults.TypeDuration, Default: "0s", Min: "0s", Max: "1h", Unit: "duration",
					Doc: "the delay varies uniformly by up to this much either way"},
				{Name: "match", Type: faults.TypeString, Default: "eicar",
					Doc: "match mode: the content that makes a scan slow; \"eicar\" is the EICAR test string; looked for in decoded MIME parts too"},
				{Name: "reply", Type: faults.TypeString, Default: "stream: Can't allocate memory",
					Doc: "error mode: the reply text before \" ERROR\""},
				{Name: "fraction", Type: faults.TypeFraction, Default: "1", Min: "0.001",
					Doc: "error mode: the share of connections whose replies become errors"},
				{Name: "bytes", Type: faults.TypeSize, Default: "64", Min: "0", Unit: "bytes",
					Doc: "close-after mode: bytes from the MTA that pass before the connection is closed"},
			},
		},
		DefaultLinks: engineLinks,
		Plan:         plan,
	}
}

// engineLinks are the target's links to AV engines (named av-engine-*).
func engineLinks(t faults.Target) []string {
	var out []string
	for _, l := range t.Links {
		if strings.HasPrefix(l.Name, "av-engine") {
			out = append(out, l.Name)
		}
	}
	return out
}

func plan(v faults.Values, link string) []network.ToxicOn {
	ms := func(name string) int64 { return v.Duration(name).Milliseconds() }
	switch v.String("mode") {
	case ModeLatency:
		return []network.ToxicOn{{Link: link, Type: "latency", Stream: network.Downstream,
			Attributes: map[string]any{"latency": ms("latency"), "jitter": ms("jitter")}}}
	case ModeError:
		return []network.ToxicOn{{Link: link, Type: network.ToxicClamdError, Stream: network.Downstream,
			Attributes: map[string]any{"reply": v.String("reply"), "fraction": v.Float("fraction")}}}
	case ModeCloseAfter:
		return []network.ToxicOn{{Link: link, Type: "limit_data", Stream: network.Upstream,
			Attributes: map[string]any{"bytes": v.Size("bytes")}}}
	}
	pattern := v.String("match")
	if strings.EqualFold(pattern, "eicar") {
		pattern = ""
	}
	return []network.ToxicOn{{Link: link, Type: network.ToxicClamdLatency, Stream: network.Upstream,
		Attributes: map[string]any{"latency": ms("latency"), "jitter": ms("jitter"), "pattern": pattern}}}
}
