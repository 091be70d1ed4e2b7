package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// TestValidateRefusesHostileFiles checks that files past the limits on
// size, nesting and text are invalid input (exit 2) with a position.
func TestValidateRefusesHostileFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(src), 0o600))
		return p
	}
	big := write("big.yaml", "title: big\ndescription: "+strings.Repeat("x", 2<<20)+"\n")
	for _, tt := range []struct {
		file, want string
	}{
		{big, big + ":2:1048566: the file is longer than 1 MiB"},
		{write("deep.yaml", "title: deep\ndescription: "+strings.Repeat("[", 40<<10)), ":2:77: mappings and lists nest more than 64 levels deep"},
		{write("nul.yaml", "title: \"a\x00\"\n"), "nul.yaml:1:10: a NUL byte"},
		{write("latin1.yaml", "title: caf\xe9\n"), "latin1.yaml:1:11: invalid UTF-8 (byte 0xe9)"},
	} {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			code, _, stderr := run(t, "validate", tt.file)
			require.Equal(t, cli.ExitInvalid, code, stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

// TestMaxFileSizeFlagRaisesTheLimit: --max-file-size reads a larger file
// (which then fails for what it says, not for its size); a bad size is a
// bad flag. (Each runs in a process of its own: the limit is the
// process's.)
func TestMaxFileSizeFlagRaisesTheLimit(t *testing.T) {
	t.Parallel()
	big := filepath.Join(t.TempDir(), "big.yaml")
	require.NoError(t, os.WriteFile(big, []byte("title: big\ndescription: "+strings.Repeat("x", 2<<20)+"\n"), 0o600))
	code, _, stderr := runProcess(t, "--max-file-size", "4MiB", "validate", big)
	require.Equal(t, cli.ExitInvalid, code, stderr)
	require.NotContains(t, stderr, "longer than")
	require.Contains(t, stderr, "version")
	code, _, stderr = runProcess(t, "--max-file-size", "lots", "validate", big)
	require.Equal(t, cli.ExitInvalid, code, stderr)
	require.Contains(t, stderr, "flag --max-file-size")
}
