// Command mailchaos-fault-misbehave is a fault plugin for mailchaos' own
// tests: a latency toxic on a link, served through the SDK, that can be
// told (by environment variables) to fail the ways real plugins fail.
//
//	MISBEHAVE_PIDFILE   write the process ID here at start
//	MISBEHAVE_HANG      a call (describe, validate, inject, remove, status)
//	                    that never answers
//	MISBEHAVE_PANIC     a call that panics
//	MISBEHAVE_EXIT      a call during which the process exits with status 3
//	MISBEHAVE_PROTOCOL  serve this protocol version instead of the SDK's
//	MISBEHAVE_STDOUT    print this on standard output before serving
//	MISBEHAVE_CHILD     a duration: at start, spawn a child process that
//	                    lives that long with the plugin's standard output
//	                    and error open; its process ID goes to
//	                    $MISBEHAVE_PIDFILE.child
//	MISBEHAVE_CHILD_SETSID  if set, that child starts a session of its own
//	                    (it leaves the plugin's process group)
//
// MISBEHAVE_HANG and MISBEHAVE_EXIT also take "start": before serving.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/mailchaos/mailchaos/plugins/internal/wire"
	"github.com/mailchaos/mailchaos/plugins/sdk"
)

// childEnv tells a process started by MISBEHAVE_CHILD to sleep this long.
const childEnv = "MISBEHAVE_CHILD_SLEEP"

func main() {
	if d := os.Getenv(childEnv); d != "" {
		sleep, _ := time.ParseDuration(d)
		time.Sleep(sleep)
		return
	}
	if f := os.Getenv("MISBEHAVE_PIDFILE"); f != "" {
		if err := os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if d := os.Getenv("MISBEHAVE_CHILD"); d != "" {
		if err := spawnChild(d); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if s := os.Getenv("MISBEHAVE_STDOUT"); s != "" {
		fmt.Println(s)
	}
	act("start")
	inj := &misbehaving{LinkFault: sdk.LinkFault{
		Spec: sdk.Spec{Name: "misbehave", Summary: "latency on a link, from a plugin that misbehaves on request", NeedsLink: true,
			Params: []sdk.Param{{Name: "latency", Type: sdk.TypeDuration, Default: "1s", Min: "0s", Max: "1m", Doc: "added delay"}}},
		Plan: func(v sdk.Values, link string) []sdk.Toxic {
			return []sdk.Toxic{{Link: link, Type: "latency", Stream: sdk.Downstream,
				Attributes: map[string]any{"latency": v.Duration("latency").Milliseconds()}}}
		},
	}}
	if v := os.Getenv("MISBEHAVE_PROTOCOL"); v != "" {
		n, _ := strconv.Atoi(v)
		wire.Serve(&wire.Plugin{Impl: inj}, uint(n), os.Stderr)
		return
	}
	sdk.Serve(inj)
}

// spawnChild starts this executable again as a child that sleeps for d
// with the plugin's standard output and error, and does not wait for it.
func spawnChild(d string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("misbehave: child: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+d)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if os.Getenv("MISBEHAVE_CHILD_SETSID") != "" {
		newSession(cmd)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("misbehave: child: %w", err)
	}
	if f := os.Getenv("MISBEHAVE_PIDFILE"); f != "" {
		if err := os.WriteFile(f+".child", []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			return fmt.Errorf("misbehave: child: %w", err)
		}
	}
	return nil
}

// misbehaving is a link fault that misbehaves in the calls it is told to.
type misbehaving struct {
	sdk.LinkFault
}

// act does what the environment says for call.
func act(call string) {
	switch call {
	case os.Getenv("MISBEHAVE_HANG"):
		for {
			time.Sleep(time.Hour)
		}
	case os.Getenv("MISBEHAVE_PANIC"):
		panic("misbehave: told to panic in " + call)
	case os.Getenv("MISBEHAVE_EXIT"):
		os.Exit(3)
	}
}

func (m *misbehaving) Describe(ctx context.Context) (sdk.Spec, error) {
	act("describe")
	return m.LinkFault.Describe(ctx)
}

func (m *misbehaving) Validate(ctx context.Context, req sdk.Request) error {
	act("validate")
	return m.LinkFault.Validate(ctx, req)
}

func (m *misbehaving) Inject(ctx context.Context, req sdk.Request) (sdk.Handle, error) {
	h, err := m.LinkFault.Inject(ctx, req)
	act("inject") // after the toxics are in place: the host must remove them
	return h, err
}

func (m *misbehaving) Remove(ctx context.Context, h sdk.Handle) error {
	act("remove")
	return m.LinkFault.Remove(ctx, h)
}

func (m *misbehaving) Status(ctx context.Context, h sdk.Handle) (sdk.Status, error) {
	act("status")
	return m.LinkFault.Status(ctx, h)
}
