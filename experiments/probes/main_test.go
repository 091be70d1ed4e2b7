package probes_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait on a condition; generous so that a busy 2-core
// machine running -race does not fail tests.
const waitFor = 30 * time.Second

// testConfig is the remediated profile on free loopback ports.
func testConfig(t testing.TB) mailstack.Config {
	t.Helper()
	cfg, err := mailstack.ProfileConfig(mailstack.ProfileRemediated)
	require.NoError(t, err)
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.IMAP.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	return cfg
}

// startStack starts a stack, closed when the test ends, and returns it with
// the target the probes see.
func startStack(t testing.TB, cfg mailstack.Config) (*mailstack.Stack, faults.Target) {
	t.Helper()
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	target := faults.Target{Endpoints: map[string]string{}}
	for _, e := range s.Endpoints() {
		target.Endpoints[e.Name] = e.Addr
	}
	for _, u := range s.Config().Users {
		target.Users = append(target.Users, faults.User{Address: u.Address, Login: u.Address, Password: u.Password})
	}
	return s, target
}

// newProbe builds a probe of the given kind the way the runner does
// (faults.Check, then New) and closes it when the test ends.
func newProbe(t testing.TB, kind probes.Kind, target faults.Target, params faults.Params) probes.Probe {
	t.Helper()
	_, errs := faults.Check(kind.Spec(), params)
	require.Empty(t, errs)
	p, err := kind.New(probes.Config{Name: "sli", Params: params, Target: target, RunID: "run1"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// measure takes one sample with the given deadline.
func measure(p probes.Probe, timeout time.Duration) probes.Sample {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Measure(ctx)
}

// sendMail sends one clean message from alice to bob over plain SMTP and
// returns its Message-ID.
func sendMail(t testing.TB, addr string, n int) string {
	t.Helper()
	id := fmt.Sprintf("<test-%d-%d@test>", time.Now().UnixNano(), n)
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client.test"))
	require.NoError(t, c.Mail("alice@example.test", nil))
	require.NoError(t, c.Rcpt("bob@example.test", nil))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = io.Copy(w, strings.NewReader(fmt.Sprintf("Subject: %d\r\nMessage-ID: %s\r\n\r\nhello\r\n", n, id)))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())
	return id
}

// waitDelivered waits until every message is in a final state.
func waitDelivered(t testing.TB, s *mailstack.Stack, ids ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, id := range ids {
			rs := s.MessagesByID(id)
			if len(rs) != 1 || rs[0].State != mailstack.StateDelivered {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "messages were not delivered")
}

// requireOK checks that a sample is a valid, positive measurement.
func requireOK(t testing.TB, s probes.Sample) {
	t.Helper()
	require.False(t, s.Failed, "sample failed: %s", s.Err)
	require.False(t, s.Skip, "sample skipped")
	require.False(t, s.At.IsZero(), "sample has no start time")
}

func TestBuiltinKinds(t *testing.T) {
	t.Parallel()
	r := probes.NewRegistry(probes.Builtin()...)
	require.Equal(t, []string{"banner", "imap-login", "load", "metric", "smtp-canary", "smtp-transaction", "tcp"}, r.Names())
	_, err := r.Get("smtp-canery")
	require.ErrorContains(t, err, `did you mean "smtp-canary"?`)
	for _, k := range probes.Builtin() {
		require.NotEmpty(t, k.Summary, k.Name)
		require.NotNil(t, k.New, k.Name)
		for _, p := range k.Params {
			require.NotEmpty(t, p.Doc, "%s.%s", k.Name, p.Name)
			if p.Default != "" {
				_, errs := faults.Check(k.Spec(), faults.Params{p.Name: p.Default})
				for _, e := range errs {
					require.NotContains(t, e.Error(), "parameter "+p.Name+" =", "default of %s.%s is invalid", k.Name, p.Name)
				}
			}
		}
	}
}

func TestNewRejectsBadParameters(t *testing.T) {
	t.Parallel()
	target := faults.Target{Endpoints: map[string]string{"smtp": "127.0.0.1:1", "imap": "127.0.0.1:2", "metrics": "127.0.0.1:3"},
		Users: []faults.User{{Address: "alice@example.test"}}}
	for _, tt := range []struct {
		kind   probes.Kind
		params faults.Params
		param  string
		want   string
	}{
		{probes.TCPKind(), faults.Params{"endpoint": "smpt"}, "endpoint", `did you mean "smtp"?`},
		{probes.BannerKind(), faults.Params{}, "endpoint", "is required"},
		{probes.CanaryKind(), faults.Params{"imap": "imapd"}, "imap", "no such endpoint"},
		{probes.CanaryKind(), faults.Params{"to": "not an address"}, "to", "not a plain e-mail address"},
		{probes.CanaryKind(), faults.Params{"poll": "0s"}, "poll", "below the minimum"},
		{probes.IMAPLoginKind(), faults.Params{"measure": "sucess"}, "measure", `did you mean "success"?`},
		{probes.MetricKind(), faults.Params{}, "metric", "is required"},
		{probes.MetricKind(), faults.Params{"metric": "x", "labels": "reason"}, "labels", "not a name=value pair"},
		{probes.MetricKind(), faults.Params{"metric": "x", "url": "ftp://x/metrics"}, "url", "an http(s) URL"},
		{probes.MetricKind(), faults.Params{"metric": "x", "endpoint": "metric"}, "endpoint", `did you mean "metrics"?`},
	} {
		t.Run(tt.kind.Name+"/"+tt.param, func(t *testing.T) {
			p, err := tt.kind.New(probes.Config{Name: "sli", Params: tt.params, Target: target, RunID: "run1"})
			require.Error(t, err)
			require.Nil(t, p)
			require.ErrorContains(t, err, "parameter "+tt.param)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestEndpointMayBeAnAddress(t *testing.T) {
	t.Parallel()
	p, err := probes.TCPKind().New(probes.Config{Params: faults.Params{"endpoint": "127.0.0.1:25"}})
	require.NoError(t, err)
	require.NoError(t, p.Close())
}
