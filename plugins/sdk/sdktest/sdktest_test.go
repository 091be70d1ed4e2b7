package sdktest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/plugins/sdk"
	"github.com/mailchaos/mailchaos/plugins/sdk/sdktest"
)

// The built-in link faults pass the kit, as every plugin must.
func TestBuiltinsConform(t *testing.T) {
	t.Run("gray-failure", func(t *testing.T) {
		sdktest.Run(t, grayfailure.New(), sdktest.Config{Params: map[string]string{"mode": "stall-after"}})
	})
	t.Run("av-latency", func(t *testing.T) {
		sdktest.Run(t, avlatency.New(), sdktest.Config{Params: map[string]string{"mode": "latency", "latency": "100ms"}})
	})
}

// broken is a link fault that breaks the contract: its toxic is not named
// after the request, and removing it twice is an error.
type broken struct{ sdk.LinkFault }

func (b *broken) Inject(ctx context.Context, req sdk.Request) (sdk.Handle, error) {
	c := sdk.Toxiproxy(req.Target)
	name := "plain-" + req.ID
	if err := c.AddToxic(ctx, req.Links[0], network.Toxic{Name: name, Type: "latency", Stream: sdk.Downstream}); err != nil {
		return sdk.Handle{}, err
	}
	return sdk.Handle{ID: req.ID, Owner: req.Owner, Fault: req.Fault, Toxiproxy: req.Target.Toxiproxy,
		Toxics: []sdk.ToxicRef{{Proxy: req.Links[0], Name: name}}, Injected: time.Now(), Expires: time.Now().Add(req.TTL)}, nil
}

func (b *broken) Remove(ctx context.Context, h sdk.Handle) error {
	c := sdk.Toxiproxy(sdk.Target{Toxiproxy: h.Toxiproxy})
	ts, err := c.Toxics(ctx, h.Toxics[0].Proxy)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.Name == h.Toxics[0].Name {
			return c.RemoveToxic(ctx, h.Toxics[0].Proxy, t.Name)
		}
	}
	return errors.New("no such fault")
}

// TestKitCatchesBrokenPlugins runs the kit on a broken plugin in a child
// process and checks that it fails, saying why.
func TestKitCatchesBrokenPlugins(t *testing.T) {
	if os.Getenv("SDKTEST_BROKEN") != "" {
		g := grayfailure.New()
		sdktest.Run(t, &broken{LinkFault: *g}, sdktest.Config{Params: map[string]string{"mode": "stall-after"}})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKitCatchesBrokenPlugins$", "-test.v")
	cmd.Env = append(os.Environ(), "SDKTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the kit passed a broken plugin:\n%s", out)
	require.Contains(t, string(out), "is not named after its request")
	require.Contains(t, string(out), "--- FAIL: TestKitCatchesBrokenPlugins/remove-idempotent")
}
