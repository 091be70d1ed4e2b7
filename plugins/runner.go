package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// pipeGrace is how long the host still reads a plugin's standard output
// and error after the plugin has exited: a process it started elsewhere
// than in its process group may hold them open for ever.
const pipeGrace = 500 * time.Millisecond

// proc runs one plugin process for go-plugin (a [runner.Runner]). Unlike
// go-plugin's own runner it owns the exec.Cmd: the plugin gets a process
// group of its own, killed as a whole, and the wait for its output pipes
// ends [pipeGrace] after the plugin has exited, whoever still holds them.
type proc struct {
	cmd *exec.Cmd

	outR, errR *os.File
	pid        int

	mu     sync.Mutex // held while the process is reaped, and by Kill
	reaped bool

	exited    chan struct{} // closed once the process has exited and is reaped
	waitErr   error
	closePipe sync.Once
}

var _ runner.Runner = (*proc)(nil)

// runnerFunc returns go-plugin's RunnerFunc for l. go-plugin gives it a
// command that carries only the environment it prepared. started receives
// the process once it is made.
func runnerFunc(l Launch, started func(*proc)) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
		cmd := exec.Command(l.Path, l.Args...)
		cmd.Env = append(append([]string(nil), l.Env...), spec.Env...)
		// Standard input stays /dev/null: in a process group of its own,
		// a plugin reading the terminal would be stopped.
		setProcAttr(cmd)
		p := &proc{cmd: cmd, exited: make(chan struct{})}
		started(p)
		return p, nil
	}
}

// Start starts the process.
func (p *proc) Start(context.Context) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("plugin stdout: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("plugin stderr: %w", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = outW, errW
	err = p.cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	p.outR, p.errR, p.pid = outR, errR, p.cmd.Process.Pid
	go p.reap()
	return nil
}

// reap waits for the process to exit, kills what is left of its group,
// reaps it and bounds the reading of its pipes.
func (p *proc) reap() {
	awaitExit(p.pid)
	p.mu.Lock()
	killGroup(p.pid)
	p.waitErr = p.cmd.Wait()
	p.reaped = true
	p.mu.Unlock()
	deadline := time.Now().Add(pipeGrace)
	_ = p.outR.SetReadDeadline(deadline)
	_ = p.errR.SetReadDeadline(deadline)
	close(p.exited)
}

// Wait waits for the process to exit. go-plugin calls it once both pipes
// are read to their end, so it closes them.
func (p *proc) Wait(context.Context) error {
	<-p.exited
	p.closePipe.Do(func() {
		p.outR.Close()
		p.errR.Close()
	})
	return p.waitErr
}

// Kill kills the plugin's process group. It does not wait.
func (p *proc) Kill(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	killGroup(p.pid)
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Stdout is the plugin's standard output; it ends at the latest
// [pipeGrace] after the plugin exited.
func (p *proc) Stdout() io.ReadCloser { return pipeReader{p.outR} }

// Stderr is the plugin's standard error, which ends like Stdout.
func (p *proc) Stderr() io.ReadCloser { return pipeReader{p.errR} }

// Name is the plugin's executable.
func (p *proc) Name() string { return p.cmd.Path }

// ID is the process ID, "" before the process starts.
func (p *proc) ID() string {
	if p.pid == 0 {
		return ""
	}
	return strconv.Itoa(p.pid)
}

// Diagnose has nothing to add: the host explains start errors itself.
func (p *proc) Diagnose(context.Context) string { return "" }

// PluginToHost returns the address as it is: the plugin runs on this host.
func (p *proc) PluginToHost(network, addr string) (string, string, error) { return network, addr, nil }

// HostToPlugin returns the address as it is.
func (p *proc) HostToPlugin(network, addr string) (string, string, error) { return network, addr, nil }

// pipeReader reads a plugin's pipe; its end (the read deadline passed, or
// the pipe was closed) reads as EOF.
type pipeReader struct{ f *os.File }

func (r pipeReader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
		err = io.EOF
	}
	return n, err
}

func (r pipeReader) Close() error { return nil }
