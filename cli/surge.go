package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/targets"
)

// surgeCommand is "mailchaos surge": the load-surge generator on its own,
// against one SMTP or IMAP server. Its protocol, schedule, message and
// log-in flags are the load-surge fault's parameters (with --rcpt for the
// parameter "to"), so they share defaults, limits and checks.
func surgeCommand(st *state) *ucli.Command {
	spec := loadsurge.Spec()
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "to", Usage: "server `HOST:PORT` to load (SMTP, or IMAP with --protocol imap); loopback only unless --allow-remote"},
		&ucli.DurationFlag{Name: "duration", Usage: "load for this long; give --duration, --count or both"},
		&ucli.Int64Flag{Name: "count", Usage: "send this many messages (or run this many IMAP sessions) at most"},
		&ucli.DurationFlag{Name: "grace", Value: loadsurge.DefaultGrace,
			Usage: "how long the messages or sessions in flight at the end (or at the first signal) get to finish; those still in flight then are cut"},
	}
	for _, p := range spec.Params {
		if p.Name == "endpoint" {
			continue
		}
		usage := p.Doc
		if p.Default != "" {
			usage += " (default: " + p.Default + ")"
		}
		flags = append(flags, &ucli.StringFlag{Name: surgeFlag(p.Name), Usage: usage})
	}
	flags = append(flags,
		&ucli.StringFlag{Name: "run-id", Usage: "the run's name, prefix of every X-Mailchaos-Id (default: random)"},
		&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		&ucli.BoolFlag{Name: "allow-remote", Usage: "allow --to to be a non-loopback address"},
	)
	return &ucli.Command{
		Name:  "surge",
		Usage: "send open-loop SMTP load or IMAP log-ins to a server and report rates and latencies",
		UsageText: "mailchaos surge --to ADDR --rate R --duration D [--concurrency C] [--size S] [--infected P]\n" +
			"  [--per-session N] [--count N] [--from ADDR] [--rcpt A,B] [--schedule ...] [--json]\n" +
			"mailchaos surge --protocol imap --to ADDR --rate R --duration D [--users A,B] [--password P]\n" +
			"  [--fetch N] [--mailbox M] [--concurrency C] [--schedule ...] [--json]",
		Description: "Messages (or IMAP log-in sessions: connect, LOGIN, SELECT, FETCH of the newest envelopes,\n" +
			"LOGOUT) are due at the times the schedule sets, whatever the server does: time spent waiting for\n" +
			"a free session counts as latency. --rate 0 is the closed loop: each session goes back to back.\n" +
			"The offered rate is over --duration (or until the load stopped), not over the grace that follows.\n" +
			"Messages still in flight when the grace ends are \"cut\", not timed out; for those cut after their\n" +
			"end of DATA was sent the server may have accepted them (its reply never came): the summary says\n" +
			"how many, and the server's own records tell which (every message carries X-Mailchaos-Id).\n" +
			"The first SIGINT/SIGTERM stops sending and waits --grace for messages in flight; the summary is\n" +
			"still printed (exit 3). A second one aborts at once.",
		Flags: flags,
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return &usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			cfg, err := surgeConfig(c, spec)
			if err != nil {
				return err
			}
			return runSurge(st, cfg, c.Bool("json"))
		},
	}
}

// surgeFlag is the flag of a load-surge parameter.
func surgeFlag(param string) string {
	if param == "to" {
		return "rcpt"
	}
	return param
}

// surgeConfig checks the flags and builds the generator's configuration.
func surgeConfig(c *ucli.Context, spec faults.Spec) (loadsurge.Load, error) {
	to := c.String("to")
	if to == "" {
		return loadsurge.Load{}, &usageError{errors.New("flag --to: required: the server's host:port")}
	}
	if err := checkAddr(to); err != nil {
		return loadsurge.Load{}, &usageError{fmt.Errorf("flag --to: %w", err)}
	}
	if host, _, _ := net.SplitHostPort(to); !c.Bool("allow-remote") && !targets.IsLoopback(host) {
		return loadsurge.Load{}, &usageError{fmt.Errorf("flag --to: %s is not a loopback address; add --allow-remote to load another host", to)}
	}
	d, n := c.Duration("duration"), c.Int64("count")
	switch {
	case d < 0:
		return loadsurge.Load{}, &usageError{errors.New("flag --duration: must not be negative")}
	case c.Duration("grace") <= 0:
		return loadsurge.Load{}, &usageError{errors.New("flag --grace: must be positive")}
	case n < 0:
		return loadsurge.Load{}, &usageError{errors.New("flag --count: must not be negative")}
	case d == 0 && n == 0:
		return loadsurge.Load{}, &usageError{errors.New("give --duration, --count or both")}
	}
	if id := c.String("run-id"); id != "" {
		if err := loadsurge.CheckRunID(id); err != nil {
			return loadsurge.Load{}, &usageError{fmt.Errorf("flag --run-id: %w", err)}
		}
	}
	params := faults.Params{}
	for _, p := range spec.Params {
		if name := surgeFlag(p.Name); c.IsSet(name) {
			params[p.Name] = c.String(name)
		}
	}
	l, err := loadsurge.ParseParams(params, nil, d)
	if err != nil {
		return l, flagErrors(err)
	}
	l.Addr, l.Duration, l.Count, l.RunID, l.Grace = to, d, n, c.String("run-id"), c.Duration("grace")
	return l, nil
}

// flagErrors rewrites the parameter errors of ParseParams in terms of
// flags, as one usage error.
func flagErrors(err error) error {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []error
	for _, e := range errs {
		var pe *faults.ParamError
		if !errors.As(e, &pe) {
			out = append(out, e)
			continue
		}
		msg := fmt.Sprintf("flag --%s", surgeFlag(pe.Param))
		if pe.Value != "" {
			msg += fmt.Sprintf(" %q", pe.Value)
		}
		msg += ": " + pe.Msg
		if pe.Allowed != "" {
			msg += " (" + pe.Allowed + ")"
		}
		out = append(out, errors.New(msg))
	}
	return &usageError{errors.Join(out...)}
}

// runSurge runs the generator until it ends or the first signal, then
// prints the result. The second signal (st.kill) aborts the run at once.
func runSurge(st *state, l loadsurge.Load, asJSON bool) error {
	run, err := l.Start(st.kill)
	if err != nil {
		return err
	}
	stopProgress := progress(st, run)
	interrupted := false
	select {
	case <-run.Done():
	case <-st.stop.Done():
		interrupted = true
		run.Stop()
	}
	stopProgress()
	<-run.Done()
	res := run.Report()
	if asJSON {
		enc := json.NewEncoder(st.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("surge: write result: %w", err)
		}
	} else {
		fmt.Fprint(st.env.Stdout, res.String())
	}
	if interrupted || st.kill.Err() != nil {
		return fmt.Errorf("surge interrupted: %w", context.Canceled)
	}
	return nil
}

// progress prints a one-line status to stderr every second while the run
// goes on, if stderr is a terminal. The returned function stops it.
func progress(st *state, run loadsurge.Generator) (stop func()) {
	f, ok := st.env.Stderr.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(f, "\r\033[K"+run.Report().Progress())
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}
