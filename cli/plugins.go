package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/plugins/builtin"
	"github.com/mailchaos/mailchaos/plugins/scaffold"
)

func pluginsCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:   "plugins",
		Usage:  "list, describe, lock and write fault plugins",
		Action: subcommandRequired,
		Description: "mailchaos looks for executables named mailchaos-fault-NAME in ./plugins.d, in each directory of\n" +
			"$MAILCHAOS_PLUGIN_PATH and in ~/.config/mailchaos/plugins; the first one found wins. With a\n" +
			"plugins.lock file (see 'plugins lock'), a plugin that is missing from it or differs is refused.",
		Subcommands: []*ucli.Command{{
			Name:  "list",
			Usage: "list the fault plugins: name, kind, SDK version, checksum state, path and parameters",
			Action: func(*ucli.Context) error {
				return listPlugins(st, "")
			},
		}, {
			Name:      "describe",
			Usage:     "describe one fault plugin and its parameter schema",
			ArgsUsage: "NAME",
			Action: func(c *ucli.Context) error {
				if c.NArg() != 1 {
					return &usageError{fmt.Errorf("plugins describe needs exactly one NAME, got %d arguments", c.NArg())}
				}
				return listPlugins(st, c.Args().First())
			},
		}, {
			Name:  "lock",
			Usage: "write plugins.lock: the SHA-256 of every plugin found, which mailchaos then insists on",
			Action: func(*ucli.Context) error {
				entries, err := pluginEntries(st)
				if err != nil {
					return err
				}
				lock := plugins.Lock{}
				for _, e := range entries {
					if e.launch.Builtin {
						continue
					}
					sum, err := plugins.Checksum(e.found.Path)
					if err != nil {
						return err
					}
					lock[e.found.Name] = sum
					fmt.Fprintf(st.env.Stdout, "%s sha256:%s %s\n", e.found.Name, sum, e.found.Path)
				}
				f, err := os.Create(st.lockPath)
				if err != nil {
					return err
				}
				if err := plugins.WriteLock(f, lock); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(st.env.Stdout, "wrote %s: %d plugins\n", st.lockPath, len(lock))
				return nil
			},
		}, pluginInitCommand(st)},
	}
}

// pluginCommand is "plugin", the hidden alias of "plugins" that earlier
// versions had for "plugin init".
func pluginCommand(st *state) *ucli.Command {
	c := pluginsCommand(st)
	c.Name, c.Hidden = "plugin", true
	return c
}

// listPlugins prints every plugin (or only the named one), starting each
// to ask for its spec; a plugin that cannot start is listed with why.
func listPlugins(st *state, only string) error {
	entries, err := pluginEntries(st)
	if err != nil {
		return err
	}
	host := plugins.NewHost(plugins.Options{Logger: st.log, CallTimeout: st.pluginTimeout, Kill: st.kill})
	defer host.Close()
	out := st.env.Stdout
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if only == "" {
		fmt.Fprintln(tw, "NAME\tKIND\tPROTOCOL\tSDK\tCHECKSUM\tPATH")
	}
	var names []string
	var specs []faults.Spec
	var problems []error
	for _, e := range entries {
		names = append(names, e.launch.Name)
		if only != "" && e.launch.Name != only {
			continue
		}
		kind, sum := "plugin", checksumState(e)
		if e.launch.Builtin {
			kind, sum = "built-in", "-"
		}
		sdk, proto := "-", "-"
		if e.refused == nil {
			p, err := host.Start(st.stop, e.launch)
			if err == nil {
				sdk, proto = p.SDKVersion(), fmt.Sprint(plugins.ProtocolVersion)
				spec, _ := p.Describe(st.stop)
				specs = append(specs, spec)
			} else {
				problems = append(problems, err)
				sum += " (not started)"
			}
		} else {
			problems = append(problems, e.refused)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.launch.Name, kind, proto, sdk, sum, e.launch.Path)
		for _, s := range e.found.Shadowed {
			fmt.Fprintf(tw, "%s\tshadowed\t-\t-\t-\t%s\n", e.launch.Name, s)
		}
	}
	if only != "" && len(specs)+len(problems) == 0 {
		return &usageError{fmt.Errorf("no plugin %q%s (plugins: %s)", only, faults.Suggest(only, names), strings.Join(names, ", "))}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Why a plugin is not usable comes right under the table (and only
	// as the error when one plugin was asked for: said once).
	if only == "" {
		for _, p := range problems {
			fmt.Fprintf(out, "\nnot usable: %v\n", p)
		}
	}
	for _, s := range specs {
		fmt.Fprintln(out)
		printSpec(out, s)
	}
	if only != "" && len(problems) > 0 {
		return errors.Join(problems...)
	}
	return nil
}

// checksumState says how a plugin stands with plugins.lock.
func checksumState(e pluginEntry) string {
	if !e.locked {
		return "unlocked"
	}
	if e.launch.Checksum == "" {
		return "NOT IN LOCK"
	}
	if got, err := plugins.Checksum(e.launch.Path); err != nil || got != e.launch.Checksum {
		return "MISMATCH"
	}
	return "locked"
}

// pluginInitCommand scaffolds a plugin module.
func pluginInitCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "init",
		Usage:     "scaffold a fault plugin module that builds and passes its tests as written",
		ArgsUsage: "NAME [DIR]",
		Description: "Writes main.go, an injector skeleton (latency on a link), a test running the SDK's\n" +
			"conformance kit, a Makefile and a README into DIR (default ./mailchaos-fault-NAME), then runs\n" +
			"'go mod tidy'. Until mailchaos' module is published, --sdk points the new module at a\n" +
			"local mailchaos checkout.\n\n" +
			"Example:\n" +
			"  mailchaos plugins init smtp-tarpit --sdk ~/src/mailchaos\n" +
			"  cd mailchaos-fault-smtp-tarpit && make test build",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "sdk", Usage: "a local mailchaos checkout (`DIR`) to build against, through a replace directive"},
			&ucli.StringFlag{Name: "module", Usage: "the new module's `PATH` (default example.com/mailchaos-fault-NAME)"},
			&ucli.BoolFlag{Name: "no-tidy", Usage: "do not run 'go mod tidy' (go.sum is then missing)"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return &usageError{fmt.Errorf("plugins init needs NAME and optionally DIR, got %d arguments", c.NArg())}
			}
			name := c.Args().Get(0)
			dir := c.Args().Get(1)
			if dir == "" {
				dir = plugins.Prefix + name
			}
			files, err := scaffold.Write(scaffold.Options{Name: name, Dir: dir, Module: c.String("module"), SDKDir: c.String("sdk"),
				Reserved: builtin.Names()})
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintf(st.env.Stdout, "wrote %s\n", f)
			}
			if !c.Bool("no-tidy") {
				if err := scaffold.Tidy(dir); err != nil {
					return err
				}
				fmt.Fprintf(st.env.Stdout, "wrote %s\n", filepath.Join(dir, "go.sum"))
			}
			fmt.Fprintf(st.env.Stdout, "\nnext: cd %s && make test build, then put bin/%s%s in ./plugins.d\n", dir, plugins.Prefix, name)
			return nil
		},
	}
}
