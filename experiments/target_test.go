package experiments_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// rest is an experiment's body after its target.
const rest = `
steady-state:
  - { name: b, probe: tcp, interval: 200ms, params: { endpoint: smtp }, tolerance: { max: 1s } }
method:
  - { fault: av-latency, for: 1s, link: av-engine-2 }
recovery: { within: 1s }
`

// TestEmbeddedConfigOverridesItsProfile: the config field is laid over the
// named profile's configuration field by field, on free loopback ports,
// and target.profile names the profile whatever config says.
func TestEmbeddedConfigOverridesItsProfile(t *testing.T) {
	e, err := experiments.Parse(context.Background(), "t.yaml", []byte(`version: 1
title: t
target:
  profile: incident
  config:
    profile: remediated
    scan: { workers: 3 }
    engines: [ {}, {} ]
`+rest), builtinCatalog(t))
	require.NoError(t, err)
	want, err := mailstack.ProfileConfig(mailstack.ProfileIncident)
	require.NoError(t, err)
	cfg := e.Target.Config
	require.Equal(t, mailstack.ProfileIncident, cfg.Profile)
	require.Equal(t, 3, cfg.Scan.Workers)
	require.Equal(t, want.Scan.Timeout, cfg.Scan.Timeout, "the profile's other settings stay")
	require.Equal(t, want.Scan.Retries, cfg.Scan.Retries)
	require.Equal(t, []string{"av-engine-1", "av-engine-2"}, []string{cfg.Engines[0].Name, cfg.Engines[1].Name})
	require.Equal(t, []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, []string{cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen})
}

// TestDefaultsAreFilledIn: what the file leaves out has its default after
// loading.
func TestDefaultsAreFilledIn(t *testing.T) {
	e, err := experiments.Parse(context.Background(), "t.yaml", []byte("version: 1\ntitle: t\n"+rest), builtinCatalog(t))
	require.NoError(t, err)
	s := e.SteadyState[0]
	require.Equal(t, 200*time.Millisecond, s.Interval)
	require.Equal(t, 4*time.Second, s.Timeout, "at most 20 intervals")
	require.Equal(t, "max", s.Tolerance.Stat)
	require.Equal(t, 30*time.Second, e.Rollbacks.Timeout)
	require.Equal(t, 600*time.Millisecond, e.Baseline, "three intervals")
	require.Equal(t, mailstack.ProfileRemediated, e.Target.Config.Profile)
}

// TestExternalEnginesAreNoEndpoints: an engine the embedded stack does not
// serve is a link but no endpoint, at validation as in a run.
func TestExternalEnginesAreNoEndpoints(t *testing.T) {
	src := `version: 1
title: t
target:
  config: { engines: [ {}, { name: outside, external: true, dial: "127.0.0.1:3310" } ] }
steady-state:
  - { name: b, probe: tcp, params: { endpoint: ENDPOINT }, tolerance: { max: 1s } }
method:
  - { fault: av-latency, for: 1s, link: outside }
recovery: { within: 1s }
`
	cat := builtinCatalog(t)
	_, err := experiments.Parse(context.Background(), "t.yaml", []byte(strings.Replace(src, "ENDPOINT", "av-engine-1", 1)), cat)
	require.NoError(t, err)
	_, err = experiments.Parse(context.Background(), "t.yaml", []byte(strings.Replace(src, "ENDPOINT", "outside", 1)), cat)
	require.ErrorContains(t, err, `steady-state[0].params.endpoint: "outside" is not an endpoint of the target`)
}
