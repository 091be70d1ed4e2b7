package cli_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/mailchaos/mailchaos/cli"
)

// inProcess is the turn at running command lines in this process.
// urfave/cli keeps state in package variables (its help flag and help
// command, written while a command line is parsed), so command lines of two
// tests must not run in this process at once. A test's own command lines
// may overlap: the test orders them. Parallel tests take turns: the one
// whose command lines run holds the turn until the last of them returns,
// and the others wait in the order they asked. Command lines run in
// processes of their own (runProcess, runBinary) need no turn.
var inProcess = &turn{free: make(chan struct{}, 1)}

type turn struct {
	free chan struct{} // full while a test holds the turn; waiters queue on it in order

	mu     sync.Mutex
	holder string // the top-level test holding the turn, "" if none
	n      int    // how many of its command lines run
}

// take waits for t's turn (or joins it, if t's test holds it already).
func (tu *turn) take(t *testing.T) {
	t.Helper()
	name, _, _ := strings.Cut(t.Name(), "/")
	tu.mu.Lock()
	if tu.holder == name {
		tu.n++
		tu.mu.Unlock()
		return
	}
	tu.mu.Unlock()
	tu.free <- struct{}{}
	tu.mu.Lock()
	tu.holder, tu.n = name, 1
	tu.mu.Unlock()
}

// hold takes t's turn for the rest of t: for a test that times its command
// lines, so that the time does not count the wait for the turn.
func (tu *turn) hold(t *testing.T) {
	t.Helper()
	tu.take(t)
	t.Cleanup(tu.done)
}

// done ends one command line; the turn passes on after the last.
func (tu *turn) done() {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	if tu.n--; tu.n == 0 {
		tu.holder = ""
		<-tu.free
	}
}

// runCLI runs the command line in this process, in t's turn, and returns
// its exit code.
func runCLI(t *testing.T, env cli.Env, args ...string) int {
	t.Helper()
	inProcess.take(t)
	defer inProcess.done()
	return cli.Run(context.Background(), append([]string{"mailchaos"}, args...), env)
}

// goCLI starts the command line in this process once it is t's turn, which
// it waits for here, and returns a channel that yields its exit code.
func goCLI(t *testing.T, env cli.Env, args ...string) <-chan int {
	t.Helper()
	inProcess.take(t)
	done := make(chan int, 1)
	go func() {
		defer inProcess.done()
		done <- cli.Run(context.Background(), append([]string{"mailchaos"}, args...), env)
	}()
	return done
}
