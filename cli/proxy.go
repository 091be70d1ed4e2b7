package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"

	"github.com/coreos/go-systemd/v22/daemon"
	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/internal/httpguard"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// defaultProxyAPI is where `mailchaos proxy serve` listens by default.
const defaultProxyAPI = "127.0.0.1:8474"

func proxyCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:        "proxy",
		Usage:       "run a toxiproxy server with mailchaos' toxics, and manage the links on such servers",
		Action:      subcommandRequired,
		Subcommands: []*ucli.Command{proxyServeCommand(st), proxyLinksCommand(st)},
	}
}

func proxyServeCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name: "serve",
		Usage: "serve a standalone toxiproxy server, with mailchaos' custom toxics and expired-fault reaping, " +
			"for hosts whose real mail stack is pointed through it",
		Description: "With --links, the links of a target file that belong to this server are created at start and kept.\n" +
			"With --state, links created through the API are saved to the state file and restored at the next start\n" +
			"(without their toxics: faults never survive a restart). When the links file and the state name the same\n" +
			"link, the file's upstream and listen address win; a listen port 0 in the file keeps the state's port.\n" +
			"See docs/proxy-service.md.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: defaultProxyAPI, Usage: "API listen `ADDR`"},
			&ucli.BoolFlag{Name: "allow-remote", Usage: "allow an API address off loopback, and proxies that listen off loopback"},
			tokenFileFlag(),
			&ucli.StringFlag{Name: "links", Usage: "create and keep the links of this target `FILE` that belong to this server"},
			&ucli.StringFlag{Name: "state", Usage: "keep the links in this `FILE` across restarts"},
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return &usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			listen := c.String("listen")
			if err := checkAddr(listen); err != nil {
				return &usageError{fmt.Errorf("flag --listen: %w", err)}
			}
			host, _, _ := net.SplitHostPort(listen)
			if !targets.IsLoopback(host) && !c.Bool("allow-remote") {
				return &usageError{fmt.Errorf("flag --listen: %s is not a loopback address; add --allow-remote to serve on it", listen)}
			}
			if c.IsSet("state") && c.String("state") == "" {
				return &usageError{errors.New("flag --state: give a file")}
			}
			token, err := serverToken(c, st)
			if err != nil {
				return err
			}
			var links []proxy.Link
			var skipped []string
			if path := c.String("links"); path != "" {
				f, err := targets.LoadFile(path, c.Bool("allow-remote"))
				if err != nil {
					return err
				}
				links, skipped = f.LinksFor(listen)
			}
			srv, err := proxy.StartServerWith(st.stop, proxy.ServerOptions{Listen: listen,
				Log: st.log.With("component", "toxiproxy"), Token: token, AllowRemote: c.Bool("allow-remote"),
				Links: links, State: c.String("state")})
			if err != nil {
				return err
			}
			defer srv.Close()
			if c.Bool("allow-remote") && token == "" {
				fmt.Fprintf(st.env.Stderr, "mailchaos: warning: --allow-remote without a token: anyone who reaches %s can create proxies; see --token-file\n", srv.URL())
			}
			out := st.env.Stdout
			fmt.Fprintf(out, "toxiproxy=%s\n", srv.URL())
			for _, l := range srv.Links() {
				state := ""
				if !l.Enabled {
					state = " (disabled)"
				}
				fmt.Fprintf(out, "link %s: %s -> %s%s\n", l.Name, l.Listen, l.Upstream, state)
			}
			for _, s := range skipped {
				fmt.Fprintln(out, s)
			}
			// Under systemd (Type=notify) the units ordered after this one
			// start now: its links listen.
			if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
				st.log.Warn("cannot tell systemd the links are ready", "err", err)
			}
			<-st.stop.Done()
			_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
			return nil
		},
	}
}

func proxyLinksCommand(st *state) *ucli.Command {
	toxiproxyFlag := func(usage string) ucli.Flag {
		return &ucli.StringFlag{Name: "toxiproxy", Usage: usage}
	}
	allowRemote := &ucli.BoolFlag{Name: "allow-remote", Usage: "allow servers and addresses off loopback (the file must allow them too)"}
	return &ucli.Command{
		Name:   "links",
		Usage:  "create, update and list the links on running toxiproxy servers",
		Action: subcommandRequired,
		Subcommands: []*ucli.Command{{
			Name:      "sync",
			Usage:     "create or update the links of a target FILE on their servers, printing what was done to each",
			ArgsUsage: "FILE",
			Description: "Each link goes to its own server (toxiproxy: on the link), else the file's (toxiproxy: at the top),\n" +
				"else --toxiproxy's. A link whose upstream or fixed listen port differs is updated (the proxy restarts:\n" +
				"its connections are closed). With --prune, the servers' proxies the file does not name are removed.",
			Flags: []ucli.Flag{
				toxiproxyFlag("the server of links the file gives none (`URL`, such as http://" + defaultProxyAPI + ")"),
				&ucli.BoolFlag{Name: "prune", Usage: "remove the proxies the file does not name from its servers"},
				allowRemote,
			},
			Action: func(c *ucli.Context) error {
				if c.NArg() != 1 {
					return &usageError{fmt.Errorf("links sync needs exactly one FILE, got %d arguments", c.NArg())}
				}
				fallback := c.String("toxiproxy")
				if err := checkServerURL(fallback, c.Bool("allow-remote")); fallback != "" && err != nil {
					return &usageError{fmt.Errorf("flag --toxiproxy: %w", err)}
				}
				f, err := targets.LoadFile(c.Args().First(), c.Bool("allow-remote"))
				if err != nil {
					return err
				}
				groups, order, err := f.LinksByServer(fallback)
				if err != nil {
					return fmt.Errorf("%s: %w", c.Args().First(), err)
				}
				return syncLinks(st, groups, order, c.Bool("prune"))
			},
		}, {
			Name:  "list",
			Usage: "list the links on a toxiproxy server",
			Flags: []ucli.Flag{
				toxiproxyFlag("the server's API `URL`"),
				allowRemote,
			},
			Action: func(c *ucli.Context) error {
				if c.Args().Present() {
					return &usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
				}
				server := c.String("toxiproxy")
				if server == "" {
					server = "http://" + defaultProxyAPI
				}
				if err := checkServerURL(server, c.Bool("allow-remote")); err != nil {
					return &usageError{fmt.Errorf("flag --toxiproxy: %w", err)}
				}
				ctx, cancel := context.WithTimeout(st.stop, network.CallTimeout)
				defer cancel()
				ps, err := proxyClient(st, server).Proxies(ctx)
				if err != nil {
					return err
				}
				printLinks(st.env.Stdout, ps)
				return nil
			},
		}},
	}
}

// checkServerURL checks a toxiproxy API URL given on the command line.
func checkServerURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not a URL such as http://%s", raw, defaultProxyAPI)
	}
	if !allowRemote && !faults.IsLoopback(u.Hostname()) {
		return fmt.Errorf("%s is not on loopback; add --allow-remote to reach it", raw)
	}
	return nil
}

// syncLinks syncs each server's links and prints one line per link. A
// server or link that failed makes the command fail (exit code Aborted)
// once every server was tried.
func syncLinks(st *state, groups map[string][]network.Proxy, order []string, prune bool) error {
	out := st.env.Stdout
	failed := 0
	for _, server := range order {
		ctx, cancel := context.WithTimeout(st.stop, 2*network.CallTimeout)
		res, err := network.SyncLinks(ctx, proxyClient(st, server), groups[server], prune)
		cancel()
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", server, err)
			failed += len(groups[server])
			continue
		}
		for _, r := range res {
			if r.Err != nil {
				fmt.Fprintf(out, "%s: %s failed on %s: %v\n", r.Name, actionVerb(r.Action), server, r.Err)
				failed++
				continue
			}
			fmt.Fprintf(out, "%s: %s %s -> %s on %s\n", r.Name, r.Action, r.Listen, r.Upstream, server)
		}
	}
	if failed > 0 {
		return exitcode.Wrap(fmt.Errorf("links sync: %d link(s) could not be synced", failed), exitcode.Aborted)
	}
	return nil
}

// actionVerb names the action that failed.
func actionVerb(action string) string {
	switch action {
	case network.LinkCreated:
		return "create"
	case network.LinkRemoved:
		return "remove"
	}
	return "update"
}

// proxyClient is a client of the API at server with the token of
// $MAILCHAOS_TOKEN.
func proxyClient(st *state, server string) *network.Client {
	return network.NewClient(server).WithToken(httpguard.EnvToken(st.env.Getenv))
}

// printLinks prints one line per proxy, sorted by name.
func printLinks(out io.Writer, ps map[string]network.Proxy) {
	for _, name := range slices.Sorted(maps.Keys(ps)) {
		p := ps[name]
		state := "enabled"
		if !p.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(out, "%s: %s -> %s %s, %d toxic(s)\n", name, p.Listen, p.Upstream, state, len(p.Toxics))
	}
}
