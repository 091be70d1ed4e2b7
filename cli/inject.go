package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/targets"
)

// adHocLink is the name of the link an ad hoc target (--upstream) puts in
// front of its address, unless one --link names it: --link ad-hoc works.
const adHocLink = "ad-hoc"

// rollbackTimeout bounds the removal of faults after a run.
const rollbackTimeout = 30 * time.Second

// targetFlags are the flags that choose a target.
func targetFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "target", Value: "mailstack", Usage: "`mailstack` (the embedded reference stack) or a target FILE"},
		&ucli.StringFlag{Name: "profile", Usage: "scanning policy of the embedded stack: remediated (default) or incident"},
		&ucli.StringFlag{Name: "upstream", Usage: "ad hoc target: put a link in front of this `ADDR` instead"},
		&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "ad hoc target: where the link listens"},
		&ucli.StringFlag{Name: "toxiproxy", Usage: "drive the toxiproxy server at this `URL` instead of an in-process one"},
		&ucli.BoolFlag{Name: "allow-remote", Usage: "allow addresses off loopback (the target file must allow them too)"},
		&ucli.StringFlag{Name: "smtp", Usage: "embedded stack: where SMTP clients connect, on loopback: the smtp-ingress link in front of its SMTP server, so faults on that link reach them (default a free port)"},
		&ucli.StringFlag{Name: "imap", Usage: "embedded stack: its IMAP listen `ADDR` on loopback (default a free port)"},
		&ucli.StringFlag{Name: "metrics", Usage: "embedded stack: its metrics listen `ADDR` on loopback (default a free port)"},
	}
}

// stackListenFlags are the flags that set where the embedded stack listens.
var stackListenFlags = []string{"smtp", "imap", "metrics"}

// embeddedTarget reports whether the flags name the embedded stack, and
// otherwise which target they name, for messages.
func embeddedTarget(c *ucli.Context) (bool, string) {
	switch {
	case c.String("upstream") != "":
		return false, "an ad hoc link to " + c.String("upstream")
	case c.String("target") != "mailstack":
		return false, "the external target " + c.String("target")
	}
	return true, "the embedded stack"
}

// stackListens sets the embedded stack's listen addresses that the flags
// give: loopback only, whatever --allow-remote says (it is for target
// files). --smtp places the smtp-ingress link, where SMTP clients connect
// (the SMTP server behind it stays on a free port).
func stackListens(c *ucli.Context, spec *targets.Spec) error {
	dst := map[string]*string{"smtp": &spec.SMTPIngress, "imap": &spec.Mailstack.IMAP.Listen, "metrics": &spec.Mailstack.Metrics.Listen}
	for _, name := range stackListenFlags {
		if !c.IsSet(name) {
			continue
		}
		addr := c.String(name)
		if err := checkAddr(addr); err != nil {
			return &usageError{fmt.Errorf("flag --%s: %w", name, err)}
		}
		if host, _, _ := net.SplitHostPort(addr); host == "" || !targets.IsLoopback(host) {
			return &usageError{fmt.Errorf("flag --%s: %s is not a loopback address: the embedded stack listens on loopback only", name, addr)}
		}
		*dst[name] = addr
	}
	return nil
}

// openTarget starts or opens the target the flags name. allowRemote says
// whether its addresses may go off loopback: with --allow-remote, an ad
// hoc link (--upstream) may, a target file when it says allow-remote:
// true, the embedded stack never.
func openTarget(c *ucli.Context, st *state, linkName string) (run *targets.Running, allowRemote bool, err error) {
	spec, err := flagTarget(c, linkName)
	if err != nil {
		return nil, false, err
	}
	run, err = spec.Start(st.stop, st.log)
	return run, c.Bool("allow-remote") && spec.Mailstack == nil && spec.File.AllowRemote, err
}

// flagTarget is the target the flags name: an ad hoc link (--upstream), a
// target file, or the embedded stack with its --profile.
func flagTarget(c *ucli.Context, linkName string) (targets.Spec, error) {
	allowRemote := c.Bool("allow-remote")
	if embedded, what := embeddedTarget(c); !embedded {
		for _, name := range stackListenFlags {
			if c.IsSet(name) {
				return targets.Spec{}, &usageError{fmt.Errorf("flag --%s: sets where the embedded stack listens, but the target is %s", name, what)}
			}
		}
	}
	if up := c.String("upstream"); up != "" {
		if linkName == "" {
			linkName = adHocLink
		}
		// An ad hoc link may go off loopback with the command line's
		// consent alone (there is no file to give it).
		f := targets.File{Name: "ad hoc", AllowRemote: allowRemote, Toxiproxy: c.String("toxiproxy"),
			Links: []targets.FileLink{{Name: linkName, Listen: c.String("listen"), Upstream: up}}}
		if fes := f.Validate(allowRemote); len(fes) > 0 {
			return targets.Spec{}, &usageError{fmt.Errorf("flag --%s: %s", flagOf(fes[0].Field), fes[0].Msg)}
		}
		return targets.Spec{File: f}, nil
	}
	if u := c.String("toxiproxy"); u != "" {
		f := targets.File{Toxiproxy: u, AllowRemote: true, Endpoints: map[string]string{"toxiproxy": "127.0.0.1:1"}}
		for _, fe := range f.Validate(allowRemote) {
			if fe.Field == "toxiproxy" {
				return targets.Spec{}, &usageError{fmt.Errorf("flag --toxiproxy: %s", fe.Msg)}
			}
		}
		if c.String("target") == "mailstack" {
			return targets.Spec{}, &usageError{fmt.Errorf("flag --toxiproxy: the embedded stack's links live on its own in-process toxiproxy; use --toxiproxy with --upstream or a target file")}
		}
	}
	if t := c.String("target"); t != "mailstack" {
		f, err := targets.LoadFile(t, allowRemote)
		if err != nil {
			return targets.Spec{}, err
		}
		return targets.Spec{File: f, Toxiproxy: c.String("toxiproxy")}, nil
	}
	cfg, err := targets.MailstackConfig(c.String("profile"))
	if err != nil {
		return targets.Spec{}, &usageError{fmt.Errorf("flag --profile: %w", err)}
	}
	spec := targets.Spec{Mailstack: &cfg}
	if err := stackListens(c, &spec); err != nil {
		return targets.Spec{}, err
	}
	return spec, nil
}

// flagOf maps a target file field of an ad hoc target to its flag.
func flagOf(field string) string {
	switch {
	case strings.HasSuffix(field, ".upstream"):
		return "upstream"
	case strings.HasSuffix(field, ".listen"):
		return "listen"
	case field == "toxiproxy":
		return "toxiproxy"
	}
	return field
}

// parseParams reads repeated --param k=v flags.
func parseParams(list []string) (faults.Params, error) {
	p := faults.Params{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &usageError{fmt.Errorf("flag --param: %q is not name=value", kv)}
		}
		p[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return p, nil
}

func injectCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "inject",
		Usage:     "inject one fault ad hoc, without an experiment file, and remove it when the time is up or on Ctrl-C",
		ArgsUsage: "FAULT",
		Description: "Examples:\n" +
			"  mailchaos inject av-latency --param latency=8s --for 1m          # the embedded stack, every AV engine link\n" +
			"  mailchaos inject gray-failure --link av-engine-2 --param mode=stall-after --for 30s\n" +
			"  mailchaos inject gray-failure --upstream 127.0.0.1:25 --param mode=blackhole --for 30s\n" +
			"  mailchaos inject gray-failure --target stack.yaml --link imap --param mode=half-open --for 2m\n" +
			"  mailchaos inject av-latency --param latency=8s --for 1m --keep --imap 127.0.0.1:1143   # watch recovery by hand\n" +
			"With --keep the embedded stack stays up once the fault is removed, until Ctrl-C/SIGTERM (a second one " +
			"when a first one removed the fault early); an external stack runs on its own, so --keep is refused there.",
		Flags: append(targetFlags(),
			&ucli.StringSliceFlag{Name: "link", Usage: "a link the fault sits on (repeat for more)"},
			&ucli.StringSliceFlag{Name: "param", Usage: "a fault parameter as `NAME=VALUE` (repeat for more)"},
			&ucli.DurationFlag{Name: "for", Value: 30 * time.Second, Usage: "how long the fault stays"},
			&ucli.DurationFlag{Name: "grace", Value: faults.DefaultTTLGrace, Usage: "if mailchaos dies, the fault still ends this long after --for at the latest (on servers mailchaos runs)"},
			&ucli.BoolFlag{Name: "keep", Usage: "embedded stack: keep it running once the fault is removed, until Ctrl-C/SIGTERM, to watch it recover"},
		),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return &usageError{fmt.Errorf("inject needs exactly one FAULT, got %d arguments", c.NArg())}
			}
			if c.Duration("for") <= 0 {
				return &usageError{fmt.Errorf("flag --for: must be positive")}
			}
			if c.Duration("grace") < 0 {
				return &usageError{fmt.Errorf("flag --grace: must not be negative")}
			}
			if embedded, what := embeddedTarget(c); c.Bool("keep") && !embedded {
				return &usageError{fmt.Errorf("flag --keep: keeps the embedded stack running after the fault, but the target is %s, "+
					"which runs on its own: watch it directly", what)}
			}
			params, err := parseParams(c.StringSlice("param"))
			if err != nil {
				return err
			}
			reg, err := loadFaults(st.stop, st)
			if err != nil {
				return err
			}
			defer reg.Close()
			inj, spec, err := reg.Get(c.Args().First())
			if err != nil {
				return err
			}
			links := c.StringSlice("link")
			linkName := ""
			if len(links) == 1 {
				linkName = links[0]
			}
			if c.String("upstream") != "" && len(links) == 0 && spec.NeedsLink {
				links, linkName = []string{adHocLink}, adHocLink
			}
			// Validate what can be checked before anything starts (the links
			// once the target is up).
			if err := inj.Validate(st.stop, faults.Request{ID: "check", Owner: "inject", Fault: spec.Name,
				Params: params, TTL: c.Duration("for") + c.Duration("grace")}); err != nil {
				return err
			}
			run, allowRemote, err := openTarget(c, st, linkName)
			if err != nil {
				return err
			}
			// The target stops within the rollback timeout, or at once on
			// a second signal (unless --keep waited for that one).
			closeBase := st.kill
			defer func() {
				ctx, cancel := context.WithTimeout(closeBase, rollbackTimeout)
				defer cancel()
				_ = run.Close(ctx)
			}()
			err = injectFor(c, st, inj, spec, run.Target, links, params, allowRemote)
			if c.Bool("keep") && keepable(err, st) {
				closeBase = keepUp(st, run.Target)
			}
			return err
		},
	}
}

// keepable reports whether the embedded stack may stay up for --keep once
// its fault's hold ended with err: the fault held its time, or a signal
// removed it early; not when it may still be in place or could not be
// held.
func keepable(err error, st *state) bool {
	if err == nil {
		return true
	}
	return st.stop.Err() != nil && st.kill.Err() == nil && exitcode.Of(err) == exitcode.Aborted
}

// keepUp keeps the embedded stack running, its fault removed, until the
// next signal: the first one when the fault held its time, the second when
// a first one removed it early. It returns the context the stack's
// shutdown is to be based on: after a second signal, a fresh one, so that
// the stack still stops gracefully (a third signal ends the process).
func keepUp(st *state, t faults.Target) context.Context {
	wait, next := st.stop, "Ctrl-C/SIGTERM"
	if st.stop.Err() != nil {
		wait, next = st.kill, "a second Ctrl-C/SIGTERM"
	}
	fmt.Fprintf(st.env.Stdout, "the fault is removed; the embedded stack is still up (--keep) until %s:\n", next)
	printEndpoints(st.env.Stdout, t)
	<-wait.Done()
	fmt.Fprintln(st.env.Stdout, "stopping the embedded stack")
	if wait == st.kill {
		return context.WithoutCancel(st.kill)
	}
	return st.kill
}

// injectFor injects one fault, holds it for --for or until a signal, and
// removes it (experiments.Hold: the runner's fault lifecycle).
func injectFor(c *ucli.Context, st *state, inj faults.Injector, spec faults.Spec, t faults.Target,
	links []string, params faults.Params, allowRemote bool) error {
	out := st.env.Stdout
	printEndpoints(out, t)
	for _, l := range t.Links {
		fmt.Fprintf(out, "link %s: %s -> %s\n", l.Name, l.Listen, l.Upstream)
	}
	d := c.Duration("for")
	req := faults.Request{ID: fmt.Sprintf("inject-%d", time.Now().UnixMilli()), Owner: "inject", Fault: spec.Name,
		Target: t, Links: links, Params: params, Duration: d, TTL: d + c.Duration("grace")}
	if err := inj.Validate(st.stop, req); err != nil {
		return err
	}
	if errs := faults.CheckAddresses(spec, params, t, allowRemote); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := experiments.CheckToxics(st.stop, experiments.NewToxicProbe(), inj, spec, req, "inject"); err != nil {
		return err
	}
	return experiments.Hold(st.stop, inj, req, experiments.HoldOptions{
		Kill:          st.kill,
		RemoveTimeout: rollbackTimeout,
		Injected: func(h faults.Handle) {
			fmt.Fprintf(out, "injected %s for %s (id %s); Ctrl-C removes it early\n", spec.Name, d, h.ID)
		},
		Lost: func(err error) { fmt.Fprintf(out, "%v\n", err) },
		Removed: func(detail string) {
			if detail != "" {
				fmt.Fprintln(out, detail)
			}
			fmt.Fprintf(out, "removed %s\n", spec.Name)
		},
	})
}

func faultsCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "faults",
		Usage:     "list the faults and their parameters",
		ArgsUsage: "[FAULT]",
		Action: func(c *ucli.Context) error {
			reg, err := loadFaults(st.stop, st)
			if err != nil {
				return err
			}
			defer reg.Close()
			specs := reg.Specs()
			if c.NArg() > 0 {
				_, spec, err := reg.Get(c.Args().First())
				if err != nil {
					return err
				}
				specs = []faults.Spec{spec}
			}
			for _, s := range specs {
				printSpec(st.env.Stdout, s)
			}
			if c.NArg() == 0 {
				for _, l := range reg.left {
					fmt.Fprintf(st.env.Stdout, "\nnot usable: %v\n", l.err)
				}
				reg.listed = true
			}
			return nil
		},
	}
}

// paramRange says a parameter's bounds: "range [0.001, 1]", ">= 0.001",
// "<= 1", or "" for none.
func paramRange(lo, hi string) string {
	switch {
	case lo != "" && hi != "":
		return fmt.Sprintf("range [%s, %s]", lo, hi)
	case lo != "":
		return ">= " + lo
	case hi != "":
		return "<= " + hi
	}
	return ""
}

// printSpec prints a fault's summary and parameter schema.
func printSpec(out io.Writer, s faults.Spec) {
	fmt.Fprintf(out, "%s: %s\n", s.Name, s.Summary)
	for _, p := range s.Params {
		extra := string(p.Type)
		if p.Default != "" {
			extra += ", default " + p.Default
		}
		if len(p.Enum) > 0 {
			extra += ", one of " + strings.Join(p.Enum, "|")
		}
		if r := paramRange(p.Min, p.Max); r != "" {
			extra += ", " + r
		}
		if p.Required {
			extra += ", required"
		}
		fmt.Fprintf(out, "  %-12s %s (%s)\n", p.Name, p.Doc, extra)
	}
}
