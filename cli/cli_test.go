package cli_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/plugins/builtin"
)

func TestMain(m *testing.M) {
	// The test binary serves the built-in faults as plugins, as mailchaos
	// does: the host starts os.Executable() in plugin mode.
	if name, ok := builtin.Requested(os.Getenv); ok {
		os.Exit(builtin.Serve(name))
	}
	// Started as mailchaos (by runProcess, or by the real stack's script
	// as `proxy serve`): the test binary is the command line. go test
	// starts it with -test.* flags first.
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-test.") {
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		os.Exit(cli.Run(context.Background(), append([]string{"mailchaos"}, os.Args[1:]...), cli.Env{
			Stdout: os.Stdout, Stderr: os.Stderr, Signals: sigs, StopSignals: func() { signal.Stop(sigs) }}))
	}
	// Most parallel tests here wait: on experiments run in processes of
	// their own, or for their turn at running command lines in this
	// process (inProcess). With the default of one running test per core,
	// tests waiting for their turn would hold every place and the rest
	// would wait behind them, so every test gets a place. -parallel on the
	// command line still rules.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "256")
	}
	// A process built with the race detector sleeps a second before it
	// exits, in case another goroutine is still reporting a race (GORACE
	// atexit_sleep_ms): every plugin process an in-process command line
	// starts (the test binary) would cost that second. A race found before
	// the exit is still reported and still sets the exit status.
	if gorace := os.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
	}
	// Runs without --journal write into the user's state directory: a
	// directory of the tests' own, removed at the end.
	state, err := os.MkdirTemp("", "mailchaos-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", state)
	bins, err := os.MkdirTemp("", "mailchaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = bins
	code := m.Run()
	_ = os.RemoveAll(state)
	_ = os.RemoveAll(bins)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const waitFor = 30 * time.Second

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// run runs the command line in-process, in its turn (inProcess), and
// returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := runCLI(t, cli.Env{Stdout: &out, Stderr: &errb}, args...)
	return code, out.String(), errb.String()
}

// runProcess runs the command line in a process of its own (the test
// binary as mailchaos) and returns its exit code, stdout and stderr. Unlike
// run, several may run at once: urfave/cli keeps state in package
// variables (its help flag), so two command lines in one process race.
func runProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	return runExecutable(t, self, args...)
}

// runBinary is runProcess with the mailchaos binary, built without the
// race detector (mailchaosBinary): for experiments whose verdict depends
// on how fast the stack and the load run, as they do for users.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runExecutable(t, mailchaosBinary(t), args...)
}

func runExecutable(t *testing.T, exe string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	// It dies with the test process, and is stopped like a user stops it
	// when it takes too long (its faults are rolled back).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "mailchaos %v took too long:\n%s\n%s", args, out.String(), errb.String())
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), errb.String()
	}
	require.NoError(t, err)
	return 0, out.String(), errb.String()
}

// built holds the binaries the tests build once, on first use, and share;
// TestMain makes its directory and removes it.
var built = struct {
	dir string
	mu  sync.Mutex
	m   map[string]*build
}{m: map[string]*build{}}

type build struct {
	once sync.Once
	err  error
}

// binary builds the main package in pkgDir into a file named name, once
// for all the tests, and returns its path.
func binary(t *testing.T, name, pkgDir string) string {
	t.Helper()
	built.mu.Lock()
	b := built.m[name]
	if b == nil {
		b = &build{}
		built.m[name] = b
	}
	built.mu.Unlock()
	path := filepath.Join(built.dir, name)
	b.once.Do(func() {
		cmd := exec.Command("go", "build", "-o", path, ".")
		cmd.Dir = pkgDir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkgDir, err, out)
		}
	})
	require.NoError(t, b.err)
	return path
}

// mailchaosBinary returns the mailchaos binary, built as make build builds
// it (without the race detector).
func mailchaosBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "mailchaos", "..")
}

// endpoints waits for NAME=ADDR lines on out and returns them.
func endpoints(t *testing.T, out *syncBuffer, want ...string) map[string]string {
	t.Helper()
	eps := map[string]string{}
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if name, addr, ok := strings.Cut(line, "="); ok {
				eps[name] = addr
			}
		}
		for _, w := range want {
			if eps[w] == "" {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "endpoints never printed: %q", out.String())
	return eps
}

func TestServeMailstackPrintsEndpointsAndStopsOnSignal(t *testing.T) {
	t.Parallel()
	var out, errb syncBuffer
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "--log-level", "warn", "target", "serve", "mailstack",
		"--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	eps := endpoints(t, &out, "smtp", "imap", "metrics", "av-engine-1", "av-engine-2", "av-engine-3")
	require.Regexp(t, regexp.MustCompile(`^smtp=127\.0\.0\.1:\d+\nimap=127\.0\.0\.1:\d+\nmetrics=127\.0\.0\.1:\d+\nav-engine-1=`), out.String())

	c, err := smtp.Dial(eps["smtp"])
	require.NoError(t, err)
	require.NoError(t, c.Hello("test"))
	require.NoError(t, c.Mail("alice@example.test", nil))
	require.NoError(t, c.Rcpt("bob@example.test", nil))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte("Subject: hi\r\n\r\nhello\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())

	engine := &clamd.Client{Addr: eps["av-engine-2"]}
	require.NoError(t, engine.Ping(context.Background()))

	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(waitFor):
		t.Fatal("mailstack did not stop on SIGTERM")
	}
	require.Contains(t, errb.String(), "mailstack stopped: 1 accepted, 1 delivered, 0 quarantined, 0 bounced, 0 still queued")
}

func TestServeClamdAnswersAndStopsOnSignal(t *testing.T) {
	t.Parallel()
	var out, errb syncBuffer
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "target", "serve", "clamd", "--listen", "127.0.0.1:0")
	eps := endpoints(t, &out, "clamd")
	c := &clamd.Client{Addr: eps["clamd"]}
	res, err := c.Scan(context.Background(), []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`))
	require.NoError(t, err)
	require.True(t, res.Infected)
	sigs <- os.Interrupt
	select {
	case code := <-done:
		require.Equal(t, cli.ExitOK, code, errb.String())
	case <-time.After(waitFor):
		t.Fatal("clamd did not stop on SIGINT")
	}
}

func TestInvalidInputExitsTwo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "stack.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("scan:\n  workers: 2\n  wrokers: 3\n"), 0o600))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad config field", []string{"target", "serve", "mailstack", "--config", bad},
			bad + `:3:3: scan.wrokers: unknown field "wrokers"`},
		{"missing config", []string{"target", "serve", "mailstack", "--config", filepath.Join(dir, "nope.yaml")},
			"nope.yaml: cannot read"},
		{"bad profile", []string{"target", "serve", "mailstack", "--profile", "incidnet"},
			`flag --profile: unknown profile "incidnet"; did you mean "incident"?`},
		{"bad address", []string{"target", "serve", "mailstack", "--smtp", "localhost"},
			`flag --smtp: "localhost" is not a host:port address`},
		{"unknown flag", []string{"target", "serve", "mailstack", "--smpt", "x"},
			"unknown flag --smpt for \"mailchaos target serve mailstack\"; did you mean --smtp?"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"target", "serve", "postfix"}, `unknown command "postfix" for "mailchaos target serve"; valid: mailstack, clamd`},
		{"missing subcommand", []string{"target"}, "needs a subcommand"},
		{"bad log level", []string{"--log-level", "loud", "target", "serve", "clamd"}, "flag --log-level"},
		{"bad duration flag", []string{"target", "serve", "clamd", "--delay", "soon"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.args...)
			require.Equal(t, cli.ExitInvalid, code, stderr)
			require.Contains(t, stderr, tt.want)
			require.NotContains(t, stderr, "goroutine ", "a stack trace reached the user")
		})
	}
}

func TestListenFailureIsNotInvalidInput(t *testing.T) {
	t.Parallel()
	var out, errb syncBuffer
	sigs := make(chan os.Signal, 1)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "target", "serve", "clamd", "--listen", "127.0.0.1:0")
	eps := endpoints(t, &out, "clamd")
	code, _, stderr := run(t, "target", "serve", "clamd", "--listen", eps["clamd"])
	require.Equal(t, cli.ExitAborted, code)
	require.Contains(t, stderr, "address already in use")
	sigs <- os.Interrupt
	require.Equal(t, cli.ExitOK, <-done)
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "--help")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "target")
	code, out, _ = run(t, "target", "serve", "mailstack", "--help")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "--profile")
}

// TestBinaryStopsCleanlyOnSIGTERM builds the real binary and stops it with a
// real signal, as a user's terminal or a service manager would.
func TestBinaryStopsCleanlyOnSIGTERM(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := mailchaosBinary(t)
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			var out, errb syncBuffer
			cmd := exec.Command(bin, "target", "serve", "mailstack", "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
			cmd.Stdout, cmd.Stderr = &out, &errb
			require.NoError(t, cmd.Start())
			endpoints(t, &out, "smtp", "av-engine-3")
			require.NoError(t, cmd.Process.Signal(sig))
			waitErr := make(chan error, 1)
			go func() { waitErr <- cmd.Wait() }()
			select {
			case err := <-waitErr:
				require.NoError(t, err, errb.String())
			case <-time.After(waitFor):
				_ = cmd.Process.Kill()
				<-waitErr
				t.Fatal("binary did not stop")
			}
			require.Contains(t, errb.String(), "mailstack stopped: 0 accepted")
		})
	}
}
