package cli_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// TestRealStackCatalogPair runs the real-stack catalog pair against Debian's
// Postfix, clamav-milter, clamd and Dovecot, with mailchaos' proxy serve on
// the milter → clamd link, as docs/real-stacks.md has a user do it: the
// incident settings fail (clean senders wait for seconds while clamd is slow
// on the virus flood), the remediated ones pass. Both run on one stack, one
// after the other (the profile is applied in between): run side by side on
// two cores they would measure each other. The pair runs in the heavy lane
// (after the AV pair, which asks first while this stack starts), with the
// mailchaos binary (built without the race detector, as users run it) in
// processes of its own.
func TestRealStackCatalogPair(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs two experiments of about 40 s on a real mail stack")
	}
	stack := realstack.Start(t, realstack.Options{Mailchaos: mailchaosBinary(t), Profile: realstack.ProfileIncident})
	heavyLane.take(t)
	proxy := network.NewClient(stack.Proxy)
	for _, tt := range []struct {
		profile, file string
		want          int
	}{
		{realstack.ProfileIncident, "postfix-milter-incident.yaml", cli.ExitFailed},
		{realstack.ProfileRemediated, "postfix-milter-remediated.yaml", cli.ExitOK},
	} {
		t.Run(tt.file, func(t *testing.T) {
			stack.Apply(t, tt.profile)
			jpath := filepath.Join(t.TempDir(), "journal.jsonl")
			code, out, stderr := runBinary(t, "--log-level", "warn", "run", "-q", "--target", stack.TargetFile,
				"--journal", jpath, "../experiments/catalog/realstack/"+tt.file)
			require.Equal(t, tt.want, code, "%s\n%s", out, stderr)

			evs, err := journal.ReadFile(jpath)
			require.NoError(t, err)
			require.Empty(t, journal.Outstanding(evs))
			v := evs[len(evs)-1]
			require.Equal(t, journal.TypeVerdict, v.Type)
			for _, s := range v.Summary.SLIs {
				during := "-"
				if s.During != nil {
					during = s.During.TimeToRecover.String()
				}
				t.Logf("%s: %s baseline %g worst %g (%d failed) recovered in %s, during faults %s",
					tt.profile, s.Name, s.Baseline, s.Worst, s.FailedSamples, s.TimeToRecover, during)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ps, err := proxy.Proxies(ctx)
			require.NoError(t, err)
			require.Empty(t, ps["clamd"].Toxics, "a toxic was left on the clamd link")
		})
	}
}
