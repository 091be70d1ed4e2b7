package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// bashComplete runs the bash completion script in a real bash, with
// COMP_WORDS and COMP_CWORD set for line (the cursor at its end), and
// returns COMPREPLY. The script calls the mailchaos binary as the line's
// first word does.
func bashComplete(t *testing.T, script, dir, line string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-c",
		`source "$1"; read -ra COMP_WORDS <<< "$2"; [[ "$2" == *" " ]] && COMP_WORDS+=("");`+
			` COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _mailchaos; printf '%s\n' "${COMPREPLY[@]}"`, "_", script, line)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	return strings.Fields(string(out))
}

// TestBashCompletion: the generated script, in a real bash, completes
// commands, subcommands, flags, fault names, link names (of the embedded
// stack and of a target file), catalog names and experiment files.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash here")
	}
	code, script, errb := run(t, "completion", "bash")
	require.Equal(t, cli.ExitOK, code, errb)
	dir := t.TempDir()
	file := filepath.Join(dir, "mailchaos.bash")
	require.NoError(t, os.WriteFile(file, []byte(script), 0o600))
	for _, f := range []string{"exp.yaml", "other.yml", "notes.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o600))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lab.yaml"),
		[]byte("name: lab\nlinks:\n  - name: mx-in\n    listen: 127.0.0.1:2525\n    upstream: 127.0.0.1:25\n"), 0o600))
	bin := mailchaosBinary(t)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"mailchaos r", []string{"run", "report", "recover"}},
		{"mailchaos pl", []string{"plugins"}},
		{"mailchaos proxy ", []string{"serve", "links"}},
		{"mailchaos proxy links s", []string{"sync"}},
		{"mailchaos target serve ", []string{"mailstack", "clamd"}},
		{"mailchaos run --ju", []string{"--junit"}},
		{"mailchaos --log", []string{"--log-level"}},
		{"mailchaos inject ", []string{"av-latency", "gray-failure", "load-surge", "maintenance"}},
		{"mailchaos faults gr", []string{"gray-failure"}},
		{"mailchaos inject av-latency --link av-engine-", []string{"av-engine-1", "av-engine-2", "av-engine-3"}},
		{"mailchaos inject gray-failure --target lab.yaml --link ", []string{"mx-in"}},
		{"mailchaos init --from av-latency-", []string{"av-latency-incident", "av-latency-remediated"}},
		{"mailchaos run ", []string{"exp.yaml", "lab.yaml", "other.yml"}},
		{"mailchaos validate ex", []string{"exp.yaml"}},
		{"mailchaos completion ", []string{"bash", "zsh", "fish"}},
		{"mailchaos help pro", []string{"proxy"}},
	} {
		line := bin + strings.TrimPrefix(tc.line, "mailchaos")
		require.ElementsMatch(t, tc.want, bashComplete(t, file, dir, line), "%q", tc.line)
	}
}

// shellCompleters complete a command line in a real zsh or fish: fish
// with its own `complete -C`; zsh by calling the script's completion
// function with words and CURRENT set, compadd and _files standing in for
// the completion system's (they print what they are given).
var shellCompleters = map[string]string{
	"fish": `source $argv[1]; complete -C "$argv[2]"`,
	"zsh": `source "$1"; compadd() { [[ "$1" == -- ]] && shift; print -l -- "$@"; };` +
		` _files() { print -l -- "<files $*>"; }; words=(${(z)2}); [[ "$2" == *" " ]] && words+=("");` +
		` CURRENT=${#words}; _mailchaos`,
}

// TestZshAndFishCompletion: the zsh and fish scripts, in real shells,
// complete what the bash one does (CI installs both shells; elsewhere a
// missing one is skipped with a line).
func TestZshAndFishCompletion(t *testing.T) {
	t.Parallel()
	bin := mailchaosBinary(t)
	for _, sh := range []string{"zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			code, script, errb := run(t, "completion", sh)
			require.Equal(t, cli.ExitOK, code, errb)
			require.Contains(t, script, "__complete")
			if _, err := exec.LookPath(sh); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is not installed (CI=true: .ci/run installs it)", sh)
				}
				t.Skipf("%s is not installed: its completion is not tried", sh)
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "mailchaos."+sh)
			require.NoError(t, os.WriteFile(file, []byte(script), 0o600))
			out, err := exec.Command(sh, "-n", file).CombinedOutput()
			require.NoError(t, err, "%s -n: %s", sh, out)
			for _, tc := range []struct {
				line string
				want []string
			}{
				{"mailchaos inj", []string{"inject"}},
				{"mailchaos proxy links s", []string{"sync"}},
				{"mailchaos inject ", []string{"av-latency", "gray-failure", "load-surge", "maintenance"}},
				{"mailchaos inject gray-failure --link imap-site-", []string{"imap-site-a", "imap-site-b", "imap-site-c"}},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				line := bin + strings.TrimPrefix(tc.line, "mailchaos")
				args := []string{"-c", shellCompleters[sh], "_", file, line}
				if sh == "fish" {
					args = []string{"--no-config", "-c", shellCompleters[sh], file, line}
				} else {
					args = append([]string{"-f"}, args...)
				}
				cmd := exec.CommandContext(ctx, sh, args...)
				cmd.Dir = dir
				out, err := cmd.Output()
				cancel()
				require.NoError(t, err, "%s: %s", tc.line, out)
				var got []string
				for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if f = strings.TrimSpace(f); f != "" {
						got = append(got, strings.Fields(f)[0])
					}
				}
				require.ElementsMatch(t, tc.want, got, "%s: %q", sh, tc.line)
			}
		})
	}
}
