package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/internal/httpguard"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// shutdownTimeout bounds a graceful stop after the first signal.
const shutdownTimeout = 30 * time.Second

func targetCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:   "target",
		Usage:  "serve the embedded reference mail stack, or one bundled clamd-compatible AV engine, until Ctrl-C",
		Action: subcommandRequired,
		Subcommands: []*ucli.Command{{
			Name:   "serve",
			Usage:  "serve the embedded reference mail stack or one of its parts",
			Action: subcommandRequired,
			Subcommands: []*ucli.Command{
				serveMailstackCommand(st),
				serveClamdCommand(st),
			},
		}},
	}
}

func serveMailstackCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:  "mailstack",
		Usage: "serve the embedded reference mail stack until SIGINT/SIGTERM",
		Description: "Prints one NAME=ADDR line per endpoint (smtp, imap, metrics, each AV engine, each access site) when ready.\n" +
			"Flags override the configuration file, which overrides the profile.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "config", Usage: "YAML configuration `FILE`"},
			&ucli.StringFlag{Name: "profile", Usage: "scanning policy profile: remediated (default) or incident"},
			&ucli.StringFlag{Name: "smtp", Value: "127.0.0.1:2525", Usage: "SMTP listen `ADDR`"},
			&ucli.StringFlag{Name: "imap", Value: "127.0.0.1:1143", Usage: "IMAP listen `ADDR`"},
			&ucli.StringFlag{Name: "metrics", Value: "127.0.0.1:9464", Usage: "metrics listen `ADDR`"},
			&ucli.BoolFlag{Name: "allow-remote", Usage: "allow listen addresses off loopback"},
			&ucli.StringFlag{Name: "spool", Usage: "keep mail still queued at stop in `DIR` and deliver it at the next start " +
				"(a directory not writable by group or others)"},
			tokenFileFlag(),
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return &usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			cfg, err := mailstackConfig(c)
			if err != nil {
				return err
			}
			if c.IsSet("spool") {
				cfg.Spool = c.String("spool")
			}
			token, err := serverToken(c, st)
			if err != nil {
				return err
			}
			stack, err := mailstack.New(cfg, mailstack.Options{Logger: st.log.With("component", "mailstack"), APIToken: token})
			if err != nil {
				return err
			}
			if err := stack.Start(st.stop); err != nil {
				return err
			}
			for _, e := range stack.Endpoints() {
				fmt.Fprintf(st.env.Stdout, "%s=%s\n", e.Name, e.Addr)
			}
			if sp := stack.Spool(); sp.Resumed > 0 {
				fmt.Fprintf(st.env.Stderr, "mailchaos: mailstack resumed %d spooled messages from %s\n", sp.Resumed, sp.Dir)
			}
			<-st.stop.Done()
			ctx, cancel := context.WithTimeout(st.kill, shutdownTimeout)
			defer cancel()
			err = stack.Shutdown(ctx)
			cnt := stack.Counts()
			fmt.Fprintf(st.env.Stderr, "mailchaos: mailstack stopped: %d accepted, %d delivered, %d quarantined, %d bounced, %d still queued\n",
				cnt.Accepted, cnt.Delivered, cnt.Quarantined, cnt.Bounced, cnt.Queued)
			reportSpool(st, stack.Spool())
			if err != nil {
				return fmt.Errorf("mailstack shutdown: %w", err)
			}
			return nil
		},
	}
}

// reportSpool says on stderr what became of the acknowledged mail the
// stack still held when it stopped.
func reportSpool(st *state, sp mailstack.SpoolStatus) {
	if sp.Spooled > 0 {
		fmt.Fprintf(st.env.Stderr, "mailchaos: mailstack spooled %d acknowledged messages to %s; the next start with this spool delivers them\n",
			sp.Spooled, sp.File)
	}
	switch {
	case sp.Unspooled == 0:
	case sp.Dir == "":
		fmt.Fprintf(st.env.Stderr, "mailchaos: %d acknowledged messages were not delivered and are lost: no spool directory is configured (--spool DIR)\n",
			sp.Unspooled)
	default:
		fmt.Fprintf(st.env.Stderr, "mailchaos: %d acknowledged messages were not delivered and could not be spooled to %s\n",
			sp.Unspooled, sp.Dir)
	}
}

// mailstackConfig builds the stack's configuration: the profile, then the
// file, then the flags that were set.
func mailstackConfig(c *ucli.Context) (mailstack.Config, error) {
	profile := c.String("profile")
	if c.IsSet("profile") {
		if _, err := mailstack.ProfileConfig(profile); err != nil {
			return mailstack.Config{}, &usageError{fmt.Errorf("flag --profile: %w", err)}
		}
	}
	var cfg mailstack.Config
	var err error
	if file := c.String("config"); file != "" {
		cfg, err = mailstack.LoadConfig(file, profile)
	} else {
		if profile == "" {
			profile = mailstack.ProfileRemediated
		}
		cfg, err = mailstack.ProfileConfig(profile)
	}
	if err != nil {
		return cfg, err
	}
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"smtp", &cfg.SMTP.Listen}, {"imap", &cfg.IMAP.Listen}, {"metrics", &cfg.Metrics.Listen}} {
		if !c.IsSet(f.flag) && c.String("config") != "" {
			continue // the file (or its default) decides
		}
		addr := c.String(f.flag)
		if err := checkAddr(addr); err != nil {
			return cfg, &usageError{fmt.Errorf("flag --%s: %w", f.flag, err)}
		}
		*f.dst = addr
	}
	if !c.Bool("allow-remote") {
		if err := loopbackListens(cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// loopbackListens refuses a configuration that listens off loopback.
func loopbackListens(cfg mailstack.Config) error {
	check := func(what, addr string) error {
		if addr == "" {
			return nil // the default, on loopback
		}
		if host, _, err := net.SplitHostPort(addr); err == nil && (host == "" || !targets.IsLoopback(host)) {
			return &usageError{fmt.Errorf("%s: %s is not a loopback address; add --allow-remote to serve on it", what, addr)}
		}
		return nil
	}
	errs := []error{check("--smtp", cfg.SMTP.Listen), check("--imap", cfg.IMAP.Listen), check("--metrics", cfg.Metrics.Listen)}
	for _, e := range cfg.Engines {
		if !e.External {
			errs = append(errs, check("engine "+e.Name+" listen", e.Listen))
		}
	}
	for _, site := range cfg.Access.Sites {
		errs = append(errs, check("access site "+site.Name+" listen", site.Listen))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// tokenFileFlag is the --token-file flag of the HTTP servers.
func tokenFileFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "token-file", Usage: "require `FILE`'s content as a bearer token on the HTTP API " +
		"(default: $" + httpguard.TokenEnv + " if set, else no token); the file must not be readable by others"}
}

// serverToken is the bearer token an HTTP server requires: --token-file's,
// else $MAILCHAOS_TOKEN's, else none.
func serverToken(c *ucli.Context, st *state) (string, error) {
	if f := c.String("token-file"); f != "" {
		tok, err := httpguard.LoadToken(f)
		if err != nil {
			return "", &usageError{fmt.Errorf("flag --token-file: %w", err)}
		}
		return tok, nil
	}
	return httpguard.EnvToken(st.env.Getenv), nil
}

// checkAddr checks a listen address: host:port with a port from 0 (any
// free one) to 65535.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not a host:port address", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}

func serveClamdCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:  "clamd",
		Usage: "serve one bundled clamd-compatible AV engine until SIGINT/SIGTERM",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:3310", Usage: "listen `ADDR`"},
			&ucli.BoolFlag{Name: "allow-remote", Usage: "allow a listen address off loopback"},
			&ucli.DurationFlag{Name: "delay", Usage: "wait this long before answering each scan (a slow engine)"},
			&ucli.StringFlag{Name: "delay-match", Usage: "only delay scans whose payload contains this `STRING`"},
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return &usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			if err := checkAddr(c.String("listen")); err != nil {
				return &usageError{fmt.Errorf("flag --listen: %w", err)}
			}
			if host, _, _ := net.SplitHostPort(c.String("listen")); !c.Bool("allow-remote") && (host == "" || !targets.IsLoopback(host)) {
				return &usageError{fmt.Errorf("flag --listen: %s is not a loopback address; add --allow-remote to serve on it", c.String("listen"))}
			}
			if c.Duration("delay") < 0 {
				return &usageError{fmt.Errorf("flag --delay: must not be negative")}
			}
			ln, err := (&net.ListenConfig{}).Listen(st.stop, "tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("clamd: %w", err)
			}
			srv := &clamd.Server{Delay: c.Duration("delay")}
			if m := c.String("delay-match"); m != "" {
				srv.DelayMatch = []byte(m)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			fmt.Fprintf(st.env.Stdout, "clamd=%s\n", ln.Addr())
			select {
			case err := <-done:
				return err
			case <-st.stop.Done():
			}
			ctx, cancel := context.WithTimeout(st.kill, shutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
			return <-done
		},
	}
}
