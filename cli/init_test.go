package cli_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// TestInitWritesAValidExperiment: the starter file and a catalog copy pass
// validate; nothing existing is overwritten without --force, and a symlink
// is replaced, never written through.
func TestInitWritesAValidExperiment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	starter := filepath.Join(dir, "first.yaml")
	code, out, errb := run(t, "init", starter)
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "wrote "+starter)
	b, err := os.ReadFile(starter)
	require.NoError(t, err)
	require.Contains(t, string(b), "mailchaos run "+starter)
	require.Contains(t, string(b), "# how long the steady state is checked")

	copied := filepath.Join(dir, "incident.yaml")
	code, _, errb = run(t, "init", "--from", "av-latency-incident", copied)
	require.Equal(t, cli.ExitOK, code, errb)
	want, err := os.ReadFile("../experiments/catalog/av-latency-incident.yaml")
	require.NoError(t, err)
	got, err := os.ReadFile(copied)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))

	code, out, errb = run(t, "validate", starter, copied)
	require.Equal(t, cli.ExitOK, code, "%s%s", out, errb)

	// A wrong catalog name lists the valid ones.
	code, _, errb = run(t, "init", "--from", "av-latency-incdent", filepath.Join(dir, "x.yaml"))
	require.Equal(t, cli.ExitInvalid, code)
	require.Contains(t, errb, `did you mean "av-latency-incident"?`)
	require.Contains(t, errb, "valid: access-gray-deep, ")
	require.NoFileExists(t, filepath.Join(dir, "x.yaml"))

	// An existing file stays as it is.
	code, _, errb = run(t, "init", "--from", "gray-av-link", copied)
	require.Equal(t, cli.ExitInvalid, code)
	require.Contains(t, errb, copied+" exists: not written; --force replaces it")
	got, err = os.ReadFile(copied)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))

	// A symlink is not followed: refused, then replaced with --force.
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o600))
	link := filepath.Join(dir, "link.yaml")
	require.NoError(t, os.Symlink(victim, link))
	code, _, errb = run(t, "init", link)
	require.Equal(t, cli.ExitInvalid, code)
	require.Contains(t, errb, "a symlink")
	code, _, errb = run(t, "init", "--force", link)
	require.Equal(t, cli.ExitOK, code, errb)
	v, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "keep", string(v))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular())

	// --force replaces a file; nothing else is left in the directory.
	code, _, errb = run(t, "init", "--force", "--from", "gray-av-link", copied)
	require.Equal(t, cli.ExitOK, code, errb)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 4, "first.yaml, incident.yaml, link.yaml, victim")
}
