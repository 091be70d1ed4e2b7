package cli_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// The documentation is executed where it can be: its commands exist, its
// YAML is valid, and what it shows the stack printing is what it prints.

// fragmentMark, on the line before a YAML block, says that the block is a
// piece of a file that no check can complete; it is only parsed.
const fragmentMark = "<!-- fragment -->"

// docBlock is one fenced block of a Markdown file.
type docBlock struct {
	file, lang string
	line       int // of the opening fence
	prev       string
	text       string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// docFiles are the Markdown files the tests read: the README and docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return append([]string{"../README.md"}, files...)
}

// docBlocks returns the fenced blocks of the files.
func docBlocks(t *testing.T, files ...string) []docBlock {
	t.Helper()
	var out []docBlock
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var cur *docBlock
		var body []string
		prev := ""
		for i, line := range strings.Split(string(data), "\n") {
			switch {
			case cur == nil && strings.HasPrefix(line, "```"):
				cur = &docBlock{file: strings.TrimPrefix(f, "../"), lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1, prev: prev}
				body = nil
			case cur != nil && strings.TrimSpace(line) == "```":
				cur.text = strings.Join(body, "\n") + "\n"
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				body = append(body, line)
			}
			if strings.TrimSpace(line) != "" {
				prev = strings.TrimSpace(line)
			}
		}
		require.Nil(t, cur, "%s: a block is not closed", f)
	}
	return out
}

// mailchaosLine matches a command line of the docs that runs mailchaos.
var mailchaosLine = regexp.MustCompile(`^(?:\$ )?(?:bin/)?mailchaos\s+(.*)$`)

// subcommands lists the commands a help text offers.
func subcommands(help string) []string {
	_, rest, ok := strings.Cut(help, "COMMANDS:\n")
	if !ok {
		return nil
	}
	var names []string
	for _, line := range strings.Split(rest, "\n") {
		if strings.TrimSpace(line) == "" || !strings.HasPrefix(line, "   ") {
			break
		}
		fields := strings.Fields(line)
		for _, f := range fields {
			names = append(names, strings.TrimSuffix(f, ","))
			if !strings.HasSuffix(f, ",") {
				break
			}
		}
	}
	return names
}

// TestDocsCommandsExist: every mailchaos command line in the README's and
// docs' shell blocks names commands that exist (each level's --help
// parses and offers the next word, as far as the words are commands), and
// every make target they name is in the Makefile.
func TestDocsCommandsExist(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	helps := map[string]string{}
	help := func(path []string) string {
		key := strings.Join(path, " ")
		if h, ok := helps[key]; ok {
			return h
		}
		code, out, errb := run(t, append(path, "--help")...)
		require.Equal(t, cli.ExitOK, code, "mailchaos %s --help: %s", key, errb)
		helps[key] = out
		return out
	}
	checked := 0
	for _, b := range docBlocks(t, docFiles(t)...) {
		if b.lang != "sh" && b.lang != "bash" && b.lang != "console" {
			continue
		}
		for _, line := range strings.Split(b.text, "\n") {
			line, _, _ = strings.Cut(line, " #")
			line = strings.TrimSpace(line)
			if target, ok := strings.CutPrefix(line, "make "); ok {
				for _, tgt := range strings.Fields(target) {
					if !strings.Contains(tgt, "=") {
						require.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(tgt)+`:`), string(makefile), "%s: make %s", b, tgt)
					}
				}
				continue
			}
			m := mailchaosLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			words := strings.Fields(m[1])
			for len(words) > 0 && strings.HasPrefix(words[0], "-") { // global flags and their values
				words = words[1:]
				if len(words) > 0 && !strings.HasPrefix(words[0], "-") && !slices.Contains(subcommands(help(nil)), words[0]) {
					words = words[1:]
				}
			}
			require.NotEmpty(t, words, "%s: %q names no command", b, line)
			var path []string
			for _, w := range words {
				if !slices.Contains(subcommands(help(path)), w) {
					break
				}
				path = append(path, w)
			}
			require.NotEmpty(t, path, "%s: %q: %q is not a mailchaos command", b, line, words[0])
			help(path)
			checked++
		}
	}
	require.Greater(t, checked, 20)
}

// yamlKeys are the yaml names of a struct type's fields.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// completion fills in what a piece of an experiment leaves out, so that
// what it shows is validated as part of a whole file.
var completion = []struct{ key, yaml string }{
	{"version", "version: 1"},
	{"title", "title: a piece of the documentation"},
	{"steady-state", "steady-state:\n  - {name: delivery, probe: smtp-canary, tolerance: {max: 2s}}"},
	{"method", "method:\n  - {fault: load-surge, for: 5s, params: {rate: 10/s}}"},
	{"recovery", "recovery: {within: 5s}"},
}

// TestDocsYAMLBlocksValidate: every YAML block of the README and docs is
// an experiment (a piece of one is completed with what it leaves out),
// a target file or a stack configuration (tried in that order: users
// are both's), and is valid as such; a block
// marked as a fragment only has to parse.
func TestDocsYAMLBlocksValidate(t *testing.T) {
	t.Parallel()
	expKeys := yamlKeys(reflect.TypeFor[experiments.Experiment]())
	stackKeys := yamlKeys(reflect.TypeFor[mailstack.Config]())
	targetKeys := yamlKeys(reflect.TypeFor[targets.File]())
	subset := func(keys, of []string) bool {
		for _, k := range keys {
			if !slices.Contains(of, k) {
				return false
			}
		}
		return true
	}
	dir := t.TempDir()
	var exps []string
	blocks := 0
	for _, b := range docBlocks(t, docFiles(t)...) {
		if b.lang != "yaml" && b.lang != "yml" {
			continue
		}
		blocks++
		var top yaml.MapSlice
		require.NoError(t, yaml.Unmarshal([]byte(b.text), &top), "%s", b)
		if b.prev == fragmentMark {
			continue
		}
		keys := make([]string, len(top))
		for i, item := range top {
			keys[i] = fmt.Sprint(item.Key)
		}
		name := strings.NewReplacer("/", "-", ".md", "").Replace(b.file) + fmt.Sprintf("-%d.yaml", b.line)
		switch {
		case subset(keys, expKeys):
			text := b.text
			for _, c := range completion {
				if !slices.Contains(keys, c.key) {
					text += c.yaml + "\n"
				}
			}
			path := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
			exps = append(exps, path)
		case subset(keys, targetKeys):
			_, err := targets.ParseFile(name, []byte(b.text), false)
			require.NoError(t, err, "%s: a target file", b)
		case subset(keys, stackKeys):
			_, err := mailstack.ParseConfig(name, []byte(b.text), "")
			require.NoError(t, err, "%s: a stack configuration", b)
		default:
			t.Errorf("%s: keys %v are not those of an experiment, a stack configuration or a target file; "+
				"mark a block that is none with %s on the line before", b, keys, fragmentMark)
		}
	}
	require.Greater(t, blocks, 10)
	require.NotEmpty(t, exps)
	code, out, errb := run(t, append([]string{"--log-level", "warn", "validate"}, exps...)...)
	require.Equal(t, cli.ExitOK, code, "%s%s", out, errb)
	require.Equal(t, len(exps), strings.Count(out, ": ok\n"), out)
}

// TestReadmeEndpointsAreThoseServed: the README's list of what
// `target serve mailstack` prints names what it prints, in its order.
func TestReadmeEndpointsAreThoseServed(t *testing.T) {
	t.Parallel()
	endpointLine := regexp.MustCompile(`^([a-z0-9-]+)=127\.0\.0\.1:\d+$`)
	var documented []string
	for _, b := range docBlocks(t, "../README.md") {
		lines := strings.Split(strings.TrimSpace(b.text), "\n")
		if b.lang != "" || !endpointLine.MatchString(lines[0]) {
			continue
		}
		require.Empty(t, documented, "%s: a second endpoint list", b)
		for _, l := range lines {
			m := endpointLine.FindStringSubmatch(l)
			require.NotNil(t, m, "%s: %q", b, l)
			documented = append(documented, m[1])
		}
	}
	require.NotEmpty(t, documented, "the README shows no endpoint list")

	var out, errb syncBuffer
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "--log-level", "warn", "target", "serve", "mailstack",
		"--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	endpoints(t, &out, documented...)
	stopServe(t, sigs, done, &errb)
	var served []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		name, _, ok := strings.Cut(l, "=")
		require.True(t, ok, "%q", l)
		served = append(served, name)
	}
	require.Equal(t, served, documented, "the README's endpoint list")
}

// TestReadmeExternalEngineWarns: the README's configuration, its real
// clamd at an address nothing answers at, starts with one warning naming
// that engine, on stderr.
func TestReadmeExternalEngineWarns(t *testing.T) {
	t.Parallel()
	var config string
	for _, b := range docBlocks(t, "../README.md") {
		if b.lang == "yaml" && strings.Contains(b.text, "external: true") {
			config = b.text
		}
	}
	require.NotEmpty(t, config, "the README shows no external engine")
	dial := regexp.MustCompile(`dial: 127\.0\.0\.1:\d+`)
	require.Regexp(t, dial, config)
	silent := freeAddr(t)
	path := filepath.Join(t.TempDir(), "stack.yaml")
	require.NoError(t, os.WriteFile(path, []byte(dial.ReplaceAllString(config, "dial: "+silent)), 0o600))

	var out, errb syncBuffer
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "--log-level", "warn", "target", "serve", "mailstack",
		"--config", path, "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	endpoints(t, &out, "smtp", "av-engine-1")
	stopServe(t, sigs, done, &errb)
	want := "engine real-clamd at " + silent + " does not answer: every message scanned by it will be deferred until it does"
	require.Equal(t, 1, strings.Count(errb.String(), want), errb.String())
	require.Contains(t, errb.String(), "level=ERROR")
}

// freeAddr returns a loopback address nothing listens on any more.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestDocsSampleErrorsAreReal: the sample error report of
// docs/experiments.md is what validate says of the test file it shows
// (testdata/invalid/many-mistakes.yaml, as exp.yaml), line by line, with
// plugins looked for in the documented places.
func TestDocsSampleErrorsAreReal(t *testing.T) {
	t.Parallel()
	var sample []string
	for _, b := range docBlocks(t, "../docs/experiments.md") {
		if b.lang == "" && strings.HasPrefix(b.text, "mailchaos: ") && strings.Contains(b.text, "exp.yaml:") {
			for _, l := range strings.Split(strings.TrimSpace(b.text), "\n")[1:] {
				sample = append(sample, strings.TrimSpace(l))
			}
		}
	}
	require.NotEmpty(t, sample, "docs/experiments.md shows no sample error")
	const file = "../experiments/testdata/invalid/many-mistakes.yaml"
	var out, errb syncBuffer
	env := map[string]string{"HOME": "~"}
	code := runCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, "validate", file)
	require.Equal(t, cli.ExitInvalid, code, errb.String())
	got := strings.Split(strings.ReplaceAll(errb.String(), file, "exp.yaml"), "\n")
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	for _, l := range sample {
		require.Contains(t, got, l, "docs/experiments.md's sample error")
	}
}

// TestCIExampleValidates: docs/ci-example.yml builds the example plugins
// before it validates, and its validate step, run with them as make
// plugins builds them, passes on every file it names.
func TestCIExampleValidates(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/ci-example.yml")
	require.NoError(t, err)
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Name string `yaml:"name"`
				Run  string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &wf))
	var runs []string
	for _, job := range wf.Jobs {
		for _, s := range job.Steps {
			runs = append(runs, s.Run)
		}
	}
	plugins := slices.IndexFunc(runs, func(r string) bool { return regexp.MustCompile(`\bmake\b.*\bplugins\b`).MatchString(r) })
	validate := slices.IndexFunc(runs, func(r string) bool { return strings.Contains(r, "mailchaos validate") })
	require.GreaterOrEqual(t, validate, 0, "no validate step")
	require.GreaterOrEqual(t, plugins, 0, "no step builds the plugins (make plugins)")
	require.Less(t, plugins, validate, "the plugins are built after the validate step")

	_, args, _ := strings.Cut(strings.TrimSpace(runs[validate]), "mailchaos validate")
	var files []string
	for _, a := range strings.Fields(args) {
		m, err := filepath.Glob(filepath.Join("..", a))
		require.NoError(t, err)
		require.NotEmpty(t, m, a)
		files = append(files, m...)
	}
	// What make plugins builds: every example plugin.
	examples, err := filepath.Glob("../plugins/examples/*")
	require.NoError(t, err)
	require.NotEmpty(t, examples)
	dir := t.TempDir()
	for _, ex := range examples {
		name := filepath.Base(ex)
		src := filepath.Join(pluginDir(t, name, ex), "mailchaos-fault-"+name)
		require.NoError(t, os.Rename(src, filepath.Join(dir, "mailchaos-fault-"+name)))
	}
	code, out, errb := runIn(t, dir, append([]string{"--log-level", "warn", "validate"}, files...)...)
	require.Equal(t, cli.ExitOK, code, "%s%s", out, errb)
	require.Equal(t, len(files), strings.Count(out, ": ok\n"), out)
}

// stopServe stops a command started with goCLI by SIGTERM and waits for
// it to exit 0.
func stopServe(t *testing.T, sigs chan<- os.Signal, done <-chan int, errb *syncBuffer) {
	t.Helper()
	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(waitFor):
		t.Fatal("the command did not stop on SIGTERM")
	}
}
