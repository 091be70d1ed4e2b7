package cli_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// The addresses refused below are 0.0.0.0: off loopback for the guard, yet
// a connection to them would only reach this machine, were the guard ever
// to let one through.

// TestInjectGuardsEveryAddress: a fault's address parameter (the
// maintenance fault's admin API) passes the loopback guard too.
func TestInjectGuardsEveryAddress(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, "inject", "maintenance", "--upstream", lineServer(t),
		"--param", "site=site-a", "--param", "admin=0.0.0.0:8080", "--for", "1s")
	require.Equal(t, cli.ExitInvalid, code, stderr)
	require.Contains(t, stderr, "0.0.0.0:8080 is not a loopback address")
}

// TestInjectAddressConsentNeedsBothSides: a fault's address off loopback
// needs --allow-remote and a target that allows it; the embedded stack
// never does, and neither side's consent alone is enough.
func TestInjectAddressConsentNeedsBothSides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, extra string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(extra+"links:\n  - { name: site-a, listen: \"127.0.0.1:0\", upstream: \""+lineServer(t)+"\" }\n"), 0o600))
		return p
	}
	closed, open := file("closed.yaml", ""), file("open.yaml", "allow-remote: true\n")
	for _, args := range [][]string{
		{"--target", closed, "--link", "site-a", "--allow-remote"},
		{"--target", open, "--link", "site-a"},
		{"--link", "av-engine-1", "--allow-remote"},
	} {
		argv := append([]string{"inject", "maintenance", "--param", "site=site-a", "--param", "admin=0.0.0.0:8080", "--for", "1s"}, args...)
		code, _, stderr := run(t, argv...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s", args, stderr)
		require.Contains(t, stderr, "0.0.0.0:8080 is not a loopback address", args)
	}
}

// writeCrashedJournal writes a journal whose one fault was never removed.
func writeCrashedJournal(t *testing.T, h faults.Handle) string {
	t.Helper()
	jpath := filepath.Join(t.TempDir(), "crashed.jsonl")
	jw, err := journal.Create(jpath, h.Owner)
	require.NoError(t, err)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeRunStart, Title: "crashed"}))
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeInject, Step: 3, Fault: h.Fault, Handle: &h}))
	require.NoError(t, jw.Close())
	return jpath
}

// TestRecoverGuardsTheJournalsAddresses: recover reaches a journal's
// toxiproxy server and admin APIs only on loopback, without --allow-remote.
func TestRecoverGuardsTheJournalsAddresses(t *testing.T) {
	t.Parallel()
	name := network.ToxicName("run-1", "s0", time.Now().Add(time.Hour), 0)
	for _, h := range []faults.Handle{
		{ID: "s0", Fault: "gray-failure", Owner: "run-1", Toxiproxy: "http://0.0.0.0:8474",
			Toxics: []faults.ToxicRef{{Proxy: "svc", Name: name}}},
		{ID: "s0", Fault: "maintenance", Owner: "run-1", Data: map[string]string{"site": "http://0.0.0.0:9464/api/sites/site-a"}},
	} {
		code, out, stderr := run(t, "recover", writeCrashedJournal(t, h))
		require.Equal(t, cli.ExitInvalid, code, "%s\n%s", out, stderr)
		require.Contains(t, stderr, "is not a loopback address")
		require.NotContains(t, out, "removed")
	}
}

// TestRecoverSaysWhatItCouldNotReach: a toxiproxy server that refuses the
// connection may only be down, with the faults still on it: recover says
// so and exits 4 instead of marking them removed; the remove events it
// writes carry their step.
func TestRecoverSaysWhatItCouldNotReach(t *testing.T) {
	t.Parallel()
	closed := "http://" + testnet.FreeAddr(t)
	name := network.ToxicName("run-1", "s0", time.Now().Add(time.Hour), 0)
	h := faults.Handle{ID: "s0", Fault: "gray-failure", Owner: "run-1", Toxiproxy: closed,
		Toxics: []faults.ToxicRef{{Proxy: "svc", Name: name}}}
	jpath := writeCrashedJournal(t, h)
	code, out, stderr := run(t, "recover", jpath)
	require.Equal(t, cli.ExitRollbackFailed, code, "%s\n%s", out, stderr)
	require.Contains(t, stderr, "could not reach "+closed)
	evs, err := journal.ReadFile(jpath)
	require.NoError(t, err)
	require.NotEmpty(t, journal.Outstanding(evs), "the fault is not marked removed")

	// Once it answers, recover removes it, and says which step it was.
	srv, err := proxy.StartServer(t.Context(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	_, err = srv.Link(t.Context(), "svc", "127.0.0.1:0", lineServer(t))
	require.NoError(t, err)
	require.NoError(t, srv.Client().AddToxic(t.Context(), "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}))
	h.Toxiproxy = srv.URL()
	jpath = writeCrashedJournal(t, h)
	code, out, stderr = run(t, "recover", jpath)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	evs, err = journal.ReadFile(jpath)
	require.NoError(t, err)
	last := evs[len(evs)-1]
	require.Equal(t, journal.TypeRemove, last.Type)
	require.Equal(t, 3, last.Step)
}

// TestRecoverFindsFaultsOnlyTheIntentRecorded: a run killed while a step
// was being injected journals the intent, not the injection; recover still
// finds the toxics by the names the intent implies.
func TestRecoverFindsFaultsOnlyTheIntentRecorded(t *testing.T) {
	t.Parallel()
	srv, err := proxy.StartServer(t.Context(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	_, err = srv.Link(t.Context(), "svc", "127.0.0.1:0", lineServer(t))
	require.NoError(t, err)
	for n := range 2 {
		name := network.ToxicName("run-1", "s0", time.Now().Add(time.Hour), n)
		require.NoError(t, srv.Client().AddToxic(t.Context(), "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}))
	}
	h := faults.Handle{ID: "s0", Fault: "gray-failure", Owner: "run-1", Toxiproxy: srv.URL(), Expires: time.Now().Add(time.Hour)}
	jpath := filepath.Join(t.TempDir(), "killed.jsonl")
	jw, err := journal.Create(jpath, "run-1")
	require.NoError(t, err)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeRunStart, Title: "killed"}))
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeIntent, Step: 0, Fault: h.Fault, Handle: &h}))
	require.NoError(t, jw.Close())

	_, out, _ := run(t, "report", jpath)
	require.Contains(t, out, "NOT REMOVED", "an intent without its outcome may have left the fault")
	code, out, stderr := run(t, "recover", jpath)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	require.Contains(t, out, "removed 2 toxics named after it")
	require.Zero(t, toxicsOn(t, srv.Client()))
	code, out, _ = run(t, "recover", jpath)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "nothing to recover")
}

// TestListenPortOutOfRangeIsInvalidInput: a port past 65535 is a bad flag
// (exit 2), caught before anything starts, not a failed run (exit 3).
func TestListenPortOutOfRangeIsInvalidInput(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"target", "serve", "mailstack", "--smtp", "127.0.0.1:99999"},
		{"target", "serve", "clamd", "--listen", "127.0.0.1:99999"},
		{"proxy", "serve", "--listen", "127.0.0.1:99999"},
	} {
		code, _, stderr := run(t, args...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s", args, stderr)
		require.Contains(t, stderr, "the port must be a number from 0 to 65535")
	}
}

// TestReportThroughALinkToADevice: a report may go through a link to a
// device (--summary /dev/stdout); only a link to a file is refused.
func TestReportThroughALinkToADevice(t *testing.T) {
	t.Parallel()
	jpath := writeCrashedJournal(t, faults.Handle{ID: "s0", Fault: "gray-failure", Owner: "run-1"})
	link := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Symlink(os.DevNull, link))
	code, _, stderr := run(t, "report", "--summary", link, jpath)
	require.Equal(t, cli.ExitOK, code, stderr)

	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o600))
	require.NoError(t, os.Symlink(victim, link+"2"))
	code, _, stderr = run(t, "report", "--summary", link+"2", jpath)
	require.NotEqual(t, cli.ExitOK, code)
	require.Contains(t, stderr, "symbolic link")
	data, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "keep", string(data))
}
