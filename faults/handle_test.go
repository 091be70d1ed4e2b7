package faults_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
)

// TestHandleOnManyServers: an intent knows every server of its target, a
// toxic ref without a server is on the handle's, and a failed removal's
// hints name each toxic's own server.
func TestHandleOnManyServers(t *testing.T) {
	tg := faults.Target{Toxiproxy: "http://127.0.0.1:1", Links: []faults.Link{
		{Name: "a"}, {Name: "b", Toxiproxy: "http://127.0.0.1:2"}, {Name: "c", Toxiproxy: "http://127.0.0.1:3"}}}
	h := faults.Intent(faults.Request{ID: "s0", Owner: "run", Fault: "f", Target: tg, TTL: time.Minute})
	require.Equal(t, "http://127.0.0.1:1", h.Toxiproxy)
	require.Equal(t, []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}, h.Servers)
	require.False(t, h.Expires.IsZero())

	one := faults.Intent(faults.Request{ID: "s0", Target: faults.Target{Toxiproxy: "http://127.0.0.1:1"}})
	require.Nil(t, one.Servers, "a single-server handle stays as it was")

	h.Servers = nil
	h.Toxics = []faults.ToxicRef{{Proxy: "a", Name: "x"}, {Proxy: "c", Name: "y", Toxiproxy: "http://127.0.0.1:3"}}
	require.Equal(t, []string{"http://127.0.0.1:1", "http://127.0.0.1:3"}, h.AllServers())
	msg := (&faults.RollbackError{Handle: h, Err: errors.New("boom")}).Error()
	require.Contains(t, msg, "curl -X DELETE http://127.0.0.1:1/proxies/a/toxics/x")
	require.Contains(t, msg, "curl -X DELETE http://127.0.0.1:3/proxies/c/toxics/y")
}

// TestSpecToxicsFor: the toxic types a request needs follow the parameter
// that decides them, its default when not given.
func TestSpecToxicsFor(t *testing.T) {
	s := faults.Spec{Toxics: []string{"always", "latency", "own"}, Params: []faults.Param{{Name: "mode", Type: faults.TypeEnum,
		Default: "m", Enum: []string{"m", "l"}, Toxics: map[string][]string{"m": {"own"}, "l": {"latency"}}}}}
	require.Equal(t, []string{"always", "own"}, s.ToxicsFor(faults.Params{}))
	require.Equal(t, []string{"always", "latency"}, s.ToxicsFor(faults.Params{"mode": "l"}))
	require.Equal(t, []string{"a"}, faults.Spec{Toxics: []string{"a"}}.ToxicsFor(nil))
	require.Empty(t, faults.Spec{}.ToxicsFor(nil))
}
