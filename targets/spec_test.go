package targets_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// externalEngine serves a bundled engine on loopback, as an engine the
// stack does not serve itself.
func externalEngine(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &clamd.Server{}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// names is the shape of a target: its endpoint and link names, its users.
func names(tg faults.Target) (endpoints, links []string, users []faults.User) {
	return slices.Sorted(maps.Keys(tg.Endpoints)), tg.LinkNames(), tg.Users
}

// TestDescribeIsTheStartedStack: validation's description of the embedded
// stack names exactly the endpoints, links and users the started stack
// has, in the same order, with the addresses left to the start.
func TestDescribeIsTheStartedStack(t *testing.T) {
	withExternal, err := targets.MailstackConfig(mailstack.ProfileIncident)
	require.NoError(t, err)
	withExternal.Engines = append(withExternal.Engines, mailstack.EngineConfig{Name: "outside", External: true, Dial: externalEngine(t)})
	byDefault, err := targets.MailstackConfig("")
	require.NoError(t, err)
	for name, cfg := range map[string]mailstack.Config{"default": byDefault, "external engine": withExternal} {
		t.Run(name, func(t *testing.T) {
			spec := targets.Spec{Mailstack: &cfg}
			desc := spec.Describe()
			require.NotEmpty(t, desc.Toxiproxy, "faults check links only on a target with a toxiproxy server")
			for n, addr := range desc.Endpoints {
				require.Empty(t, addr, n)
			}
			run, err := spec.Start(context.Background(), nil)
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				require.NoError(t, run.Close(ctx))
			})
			wantEndpoints, wantLinks, wantUsers := names(desc)
			gotEndpoints, gotLinks, gotUsers := names(run.Target)
			require.Equal(t, wantEndpoints, gotEndpoints)
			require.Equal(t, wantLinks, gotLinks)
			require.Equal(t, wantUsers, gotUsers)
			require.Equal(t, targets.LinkSMTPIngress, gotLinks[0])
			for n, addr := range run.Target.Endpoints {
				require.NotEmpty(t, addr, n)
			}
		})
	}
}

// TestDescribeLeavesTheConfigurationAlone: names that default from their
// place are described, not written into the caller's configuration.
func TestDescribeLeavesTheConfigurationAlone(t *testing.T) {
	cfg, err := targets.MailstackConfig("")
	require.NoError(t, err)
	cfg.Engines = []mailstack.EngineConfig{{}}
	desc := targets.Spec{Mailstack: &cfg}.Describe()
	require.Contains(t, desc.Endpoints, "av-engine-1")
	require.Empty(t, cfg.Engines[0].Name)
}

func TestMailstackConfig(t *testing.T) {
	cfg, err := targets.MailstackConfig("")
	require.NoError(t, err)
	require.Equal(t, targets.DefaultProfile, cfg.Profile)
	require.Equal(t, []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, []string{cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen})
	_, err = targets.MailstackConfig("incidnet")
	require.ErrorContains(t, err, `did you mean "incident"?`)
}

// TestSpecToxiproxy: the override wins over the file's server, and the
// embedded stack refuses one (its links are on its own server).
func TestSpecToxiproxy(t *testing.T) {
	f := targets.File{Toxiproxy: "http://127.0.0.1:8474", Endpoints: map[string]string{"smtp": "127.0.0.1:25"}}
	require.Equal(t, "http://127.0.0.1:8474", targets.Spec{File: f}.Describe().Toxiproxy)
	require.Equal(t, "http://127.0.0.1:9474", targets.Spec{File: f, Toxiproxy: "http://127.0.0.1:9474"}.Describe().Toxiproxy)
	cfg := mailstack.DefaultConfig()
	_, err := targets.Spec{Mailstack: &cfg, Toxiproxy: "http://127.0.0.1:8474"}.Start(context.Background(), nil)
	require.ErrorContains(t, err, "in-process toxiproxy server")
}
