// Command mailchaos is a chaos-engineering toolkit for e-mail systems: it
// injects AV-engine latency, gray network failures and load surges into a
// mail stack and checks that the stack recovers within set bounds.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/plugins/builtin"
)

func main() {
	// Started by mailchaos itself to serve a built-in fault as a plugin.
	if name, ok := builtin.Requested(os.Getenv); ok {
		os.Exit(builtin.Serve(name))
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(cli.Run(context.Background(), os.Args, cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Signals: sigs,
		StopSignals: func() { signal.Stop(sigs) },
	}))
}
