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
// COMP_WORDS set to words (as bash splits a line: quotes kept, "=" a word
// of its own) and COMP_CWORD to the last, and returns COMPREPLY. The script
// calls the mailchaos binary as the first word does.
func bashComplete(t *testing.T, script, dir string, words []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"--norc", "--noprofile", "-c",
		`source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($#-1)); _mailchaos;` +
			` printf '%s\n' "${COMPREPLY[@]}"`, "_", script}, words...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	return lines(string(out))
}

// lines are the non-empty lines of out, each up to a tab (fish's
// description).
func lines(out string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if l, _, _ = strings.Cut(l, "\t"); strings.TrimSpace(l) != "" {
			got = append(got, l)
		}
	}
	return got
}

// spaceDir makes DIR/"my dir" with an experiment and a note in it.
func spaceDir(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "my dir"), 0o700))
	for _, f := range []string{"exp.yaml", "notes.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "my dir", f), nil, 0o600))
	}
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
	spaceDir(t, dir)
	bin := mailchaosBinary(t)
	type bashCase struct {
		line  string
		want  []string
		words []string // COMP_WORDS after the program, when not the line's fields
	}
	for _, tc := range []bashCase{
		{"mailchaos r", []string{"run", "report", "recover"}, nil},
		{"mailchaos pl", []string{"plugins"}, nil},
		{"mailchaos proxy ", []string{"serve", "links"}, nil},
		{"mailchaos proxy links s", []string{"sync"}, nil},
		{"mailchaos target serve ", []string{"mailstack", "clamd"}, nil},
		{"mailchaos run --ju", []string{"--junit"}, nil},
		{"mailchaos --log", []string{"--log-level"}, nil},
		{"mailchaos inject ", []string{"av-latency", "gray-failure", "load-surge", "maintenance"}, nil},
		{"mailchaos faults gr", []string{"gray-failure"}, nil},
		{"mailchaos inject av-latency --link av-engine-", []string{"av-engine-1", "av-engine-2", "av-engine-3"}, nil},
		{"mailchaos inject gray-failure --target lab.yaml --link ", []string{"mx-in"}, nil},
		{"mailchaos init --from av-latency-", []string{"av-latency-incident", "av-latency-remediated"}, nil},
		{"mailchaos run ", []string{"exp.yaml", "lab.yaml", "other.yml", "my dir"}, nil},
		{"mailchaos validate ex", []string{"exp.yaml"}, nil},
		{"mailchaos completion ", []string{"bash", "zsh", "fish"}, nil},
		{"mailchaos help pro", []string{"proxy"}, nil},
		// Bash keeps the quoting: the script dequotes before looking up
		// files (bash quotes the candidates again).
		{line: `mailchaos run my\ dir/`, words: []string{"run", `my\ dir/`}, want: []string{"my dir/exp.yaml"}},
		{line: `mailchaos run "my dir/e`, words: []string{"run", `"my dir/e`}, want: []string{"my dir/exp.yaml"}},
		{line: `mailchaos run 'my`, words: []string{"run", `'my`}, want: []string{"my dir"}},
		// Bash splits at "=": the candidates are for the value part.
		{line: "mailchaos inject av-latency --link=av-engine-", words: []string{"inject", "av-latency", "--link", "=", "av-engine-"},
			want: []string{"av-engine-1", "av-engine-2", "av-engine-3"}},
		{line: "mailchaos inject gray-failure --target=lab.yaml --link=", words: []string{"inject", "gray-failure", "--target", "=", "lab.yaml", "--link", "="},
			want: []string{"mx-in"}},
		{line: "mailchaos init --from=av-latency-", words: []string{"init", "--from", "=", "av-latency-"},
			want: []string{"av-latency-incident", "av-latency-remediated"}},
		{line: `mailchaos inject gray-failure --target=my\ dir/`, words: []string{"inject", "gray-failure", "--target", "=", `my\ dir/`},
			want: []string{"my dir/exp.yaml"}},
	} {
		words := tc.words
		if words == nil {
			words = strings.Fields(strings.TrimPrefix(tc.line, "mailchaos"))
			if strings.HasSuffix(tc.line, " ") {
				words = append(words, "")
			}
		}
		got := bashComplete(t, file, dir, append([]string{bin}, words...))
		require.ElementsMatch(t, tc.want, got, "%q", tc.line)
	}
}

// shellCompleters complete a command line in a real zsh or fish: fish
// with its own `complete -C`; zsh by calling the script's completion
// function with words and CURRENT set, compadd, compset and _files
// standing in for the completion system's (they print what they are given).
var shellCompleters = map[string]string{
	"fish": `source $argv[1]; complete -C "$argv[2]"`,
	"zsh": `source "$1"; compadd() { [[ "$1" == -- ]] && shift; print -l -- "$@"; };` +
		` _files() { print -l -- "<files $*>"; }; compset() { print -l -- "<compset $*>"; }; words=(${(z)2}); [[ "$2" == *" " ]] && words+=("");` +
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
			spaceDir(t, dir)
			for _, tc := range []struct {
				line string
				want []string
				zsh  []string // what zsh hands to compadd, compset and _files, when not want
			}{
				{"mailchaos inj", []string{"inject"}, nil},
				{"mailchaos proxy links s", []string{"sync"}, nil},
				{"mailchaos inject ", []string{"av-latency", "gray-failure", "load-surge", "maintenance"}, nil},
				{"mailchaos inject gray-failure --link imap-site-", []string{"imap-site-a", "imap-site-b", "imap-site-c"}, nil},
				{"mailchaos inject av-latency --link=av-engine-", []string{"--link=av-engine-1", "--link=av-engine-2", "--link=av-engine-3"}, nil},
				{"mailchaos init --from=av-latency-", []string{"--from=av-latency-incident", "--from=av-latency-remediated"}, nil},
				// fish lists every file, experiments first; zsh's _files
				// filters and reads the quoting itself.
				{`mailchaos run my\ dir/`, []string{"my dir/exp.yaml", "my dir/notes.txt"}, []string{"<files -g *.(yaml|yml)>"}},
				{`mailchaos init my\ d`, []string{"my dir/"}, []string{"<files >"}},
				{`mailchaos inject gray-failure --target=my\ dir/e`, []string{"--target=my dir/exp.yaml"},
					[]string{"<compset -P *=>", "<files -g *.(yaml|yml)>"}},
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
				want := tc.want
				if sh == "zsh" && tc.zsh != nil {
					want = tc.zsh
				}
				require.ElementsMatch(t, want, lines(string(out)), "%s: %q", sh, tc.line)
			}
		})
	}
}
