package network_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
)

// TestSpecToxicsMatchThePlan: for every mode of the built-in link faults,
// the toxic types their spec declares (what crosses the plugin wire) are
// exactly those their plan adds, and every type is in Spec.Toxics.
func TestSpecToxicsMatchThePlan(t *testing.T) {
	tg := faults.Target{Toxiproxy: "http://127.0.0.1:1", Links: []faults.Link{{Name: "av-engine-1"}}}
	for _, li := range []*network.LinkInjector{avlatency.New(), grayfailure.New()} {
		mode, ok := li.Spec.Param("mode")
		require.True(t, ok)
		for _, m := range mode.Enum {
			req := faults.Request{Fault: li.Spec.Name, Target: tg, Links: []string{"av-engine-1"}, Params: faults.Params{"mode": m}}
			if m == grayfailure.ModeReset {
				req.Params["direction"] = grayfailure.DirUpstream
			}
			byLink, err := li.LinkToxics(context.Background(), req)
			require.NoError(t, err, "%s %s", li.Spec.Name, m)
			got := slices.Sorted(slices.Values(byLink["av-engine-1"]))
			require.Equal(t, li.Spec.ToxicsFor(req.Params), got, "%s %s", li.Spec.Name, m)
			for _, typ := range got {
				require.Contains(t, li.Spec.Toxics, typ)
			}
		}
	}
}
