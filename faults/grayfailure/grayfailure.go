// Package grayfailure is the gray-failure fault: a network element that
// fails silently. Connections are accepted and stay open; no reset, no FIN,
// no error tells the client anything is wrong. The loud contrast, reset, is
// there for comparison.
package grayfailure

import (
	"fmt"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
)

// Name is the fault's name.
const Name = "gray-failure"

// Modes.
const (
	ModeBlackhole  = "blackhole"
	ModeStallAfter = "stall-after"
	ModeSlowDrip   = "slow-drip"
	ModeHalfOpen   = "half-open"
	ModeReset      = "reset"
)

// Directions.
const (
	DirDownstream = "downstream"
	DirUpstream   = "upstream"
	DirBoth       = "both"
)

// New returns the gray-failure injector.
func New() *network.LinkInjector {
	return &network.LinkInjector{
		Spec: faults.Spec{
			Name:      Name,
			Summary:   "silent network element failure on a link: black hole, stall after the greeting, slow drip, half-open; reset for contrast",
			NeedsLink: true,
			// Every mode but reset needs mailchaos' own toxics.
			Toxics: []string{network.ToxicBlackhole, network.ToxicStall, network.ToxicDrip, "reset_peer"},
			Params: []faults.Param{
				{Name: "mode", Type: faults.TypeEnum, Required: true,
					Enum: []string{ModeBlackhole, ModeStallAfter, ModeSlowDrip, ModeHalfOpen, ModeReset},
					Toxics: map[string][]string{ModeBlackhole: {network.ToxicBlackhole}, ModeHalfOpen: {network.ToxicBlackhole},
						ModeStallAfter: {network.ToxicStall}, ModeSlowDrip: {network.ToxicDrip}, ModeReset: {"reset_peer"}},
					Doc: "blackhole: bytes swallowed, connection never closed; stall-after: the first bytes (the greeting) pass, then the session hangs; slow-drip: bytes crawl at `rate`; half-open: one direction dead; reset: connections reset (loud, for contrast)"},
				{Name: "after", Type: faults.TypeString, Default: "greeting",
					Doc: "stall-after: \"greeting\" (the first line passes) or a byte count such as 0 or 512"},
				{Name: "rate", Type: faults.TypeSize, Default: "10", Min: "1", Unit: "bytes/s",
					Doc: "slow-drip: bytes per second"},
				{Name: "direction", Type: faults.TypeEnum, Enum: []string{DirDownstream, DirUpstream, DirBoth},
					Doc: "which bytes are hit: downstream (server to client), upstream (client to server) or both; default both for blackhole, upstream for half-open, downstream otherwise"},
				{Name: "fraction", Type: faults.TypeFraction, Default: "1", Min: "0.001",
					Doc: "share of connections affected, decided once per connection"},
			},
		},
		Check: check,
		Plan:  plan,
	}
}

func check(v faults.Values) error {
	mode := v.String("mode")
	if mode == ModeStallAfter && v.String("after") != "greeting" {
		if _, err := faults.ParseSize(v.String("after")); err != nil {
			return &faults.ParamError{Fault: Name, Param: "after", Value: v.String("after"),
				Msg: "not greeting or a byte count", Allowed: "greeting, or a size such as 0 or 512"}
		}
	}
	if direction(v) == DirBoth && v.Float("fraction") < 1 {
		return &faults.ParamError{Fault: Name, Param: "fraction", Value: v.String("fraction"),
			Msg:     "a fraction below 1 needs one direction (each direction decides on its own)",
			Allowed: "set direction to downstream or upstream"}
	}
	if mode == ModeReset && direction(v) == DirBoth {
		return &faults.ParamError{Fault: Name, Param: "direction", Value: DirBoth,
			Msg: "reset acts on one direction", Allowed: "downstream or upstream"}
	}
	return nil
}

// direction is the direction given or the mode's default.
func direction(v faults.Values) string {
	if d := v.String("direction"); d != "" {
		return d
	}
	switch v.String("mode") {
	case ModeBlackhole:
		return DirBoth
	case ModeHalfOpen:
		return DirUpstream
	}
	return DirDownstream
}

func streams(dir string) []string {
	switch dir {
	case DirUpstream:
		return []string{network.Upstream}
	case DirBoth:
		return []string{network.Upstream, network.Downstream}
	}
	return []string{network.Downstream}
}

func plan(v faults.Values, link string) []network.ToxicOn {
	fraction := v.Float("fraction")
	var out []network.ToxicOn
	for _, s := range streams(direction(v)) {
		t := network.ToxicOn{Link: link, Stream: s}
		switch v.String("mode") {
		case ModeBlackhole, ModeHalfOpen:
			t.Type, t.Attributes = network.ToxicBlackhole, map[string]any{"fraction": fraction}
		case ModeStallAfter:
			attrs := map[string]any{"fraction": fraction, "line": v.String("after") == "greeting"}
			if n, err := faults.ParseSize(v.String("after")); err == nil {
				attrs["bytes"] = n
			}
			t.Type, t.Attributes = network.ToxicStall, attrs
		case ModeSlowDrip:
			t.Type, t.Attributes = network.ToxicDrip, map[string]any{"rate": v.Size("rate"), "fraction": fraction}
		case ModeReset:
			t.Type, t.Toxicity, t.Attributes = "reset_peer", float32(fraction), map[string]any{"timeout": 0}
		default:
			panic(fmt.Sprintf("gray-failure: mode %q passed validation", v.String("mode")))
		}
		out = append(out, t)
	}
	return out
}
