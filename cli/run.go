package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/experiments/report"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/builtin"
)

// catalog builds what experiment files may name; close stops the fault
// plugins.
func catalog(ctx context.Context, st *state, c *ucli.Context) (cat experiments.Catalog, close func(), err error) {
	fs, err := loadFaults(ctx, st)
	if err != nil {
		return experiments.Catalog{}, nil, err
	}
	return experiments.Catalog{Faults: fs.Registry, Probes: probes.NewRegistry(probes.Builtin()...),
		AllowRemote: c.Bool("allow-remote"), TargetFile: c.String("target")}, fs.Close, nil
}

// targetFlag runs experiments against another target.
func targetFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "target", Usage: "use the external target described in target `FILE` instead of each experiment's own"}
}

// loadAll loads every experiment file, reporting every error of every file.
func loadAll(ctx context.Context, files []string, cat experiments.Catalog) ([]*experiments.Experiment, error) {
	var exps []*experiments.Experiment
	var errs []error
	for _, f := range files {
		e, err := experiments.Load(ctx, f, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		exps = append(exps, e)
	}
	return exps, errors.Join(errs...)
}

func validateCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "validate",
		Usage:     "check experiment files without running them",
		ArgsUsage: "FILE...",
		Flags:     []ucli.Flag{&ucli.BoolFlag{Name: "allow-remote", Usage: "allow targets off loopback"}, targetFlag()},
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return &usageError{errors.New("validate needs at least one experiment FILE")}
			}
			cat, closeFaults, err := catalog(st.stop, st, c)
			if err != nil {
				return err
			}
			defer closeFaults()
			// Each valid file says so, whatever the others hold; the
			// errors of the invalid ones follow, each naming its file.
			var errs []error
			for _, f := range c.Args().Slice() {
				if _, err := experiments.Load(st.stop, f, cat); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(st.env.Stdout, "%s: ok\n", f)
			}
			return errors.Join(errs...)
		},
	}
}

func schemaCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:  "schema",
		Usage: "print the JSON Schema of experiment files (for editors)",
		Description: "Each step's and SLI's params are typed by the built-in fault or probe it names. The fault " +
			"plugins found now are named, with their params left to validate: no plugin is started.",
		Action: func(c *ucli.Context) error {
			// No plugin is started: the built-ins' specs are read in
			// process, and the plugins found are named only.
			reg := faults.NewRegistry()
			for _, inj := range builtin.Injectors() {
				if err := reg.Add(st.stop, inj); err != nil {
					return err
				}
			}
			entries, err := pluginEntries(st)
			if err != nil {
				return err
			}
			var found []string
			for _, e := range entries {
				if e.found.Name != "" && e.refused == nil {
					found = append(found, e.found.Name)
				}
			}
			b, err := experiments.Schema(experiments.Catalog{Faults: reg, Probes: probes.NewRegistry(probes.Builtin()...)}, found...)
			if err != nil {
				return err
			}
			_, err = st.env.Stdout.Write(append(b, '\n'))
			return err
		},
	}
}

func runCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "run",
		Usage:     "run experiment files and gate on their verdict",
		ArgsUsage: "FILE...",
		Description: "Exit codes: 0 everything held; 1 the system under test failed; 2 invalid input; " +
			"3 the run failed or was interrupted (every fault rolled back); 4 a rollback failed.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "journal", Usage: "write the journal (JSON Lines) to the new `FILE` (an existing one is refused); default a new file in $XDG_STATE_HOME/mailchaos or ~/.local/state/mailchaos"},
			&ucli.StringFlag{Name: "junit", Usage: "write a JUnit XML report to `FILE`"},
			&ucli.StringFlag{Name: "summary", Usage: "write a Markdown summary to `FILE` (e.g. $GITHUB_STEP_SUMMARY)"},
			&ucli.BoolFlag{Name: "allow-remote", Usage: "allow targets off loopback (the experiment must allow them too)"},
			&ucli.StringFlag{Name: summaryJSONFlag, Usage: "write the machine-readable summary (JSON, schema mailchaos.summary/v1) to `FILE` (- for stdout)"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print the summary only: no progress lines, no journal path"},
			targetFlag(),
			htmlFlag(), dashboardFlag(),
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return &usageError{errors.New("run needs at least one experiment FILE")}
			}
			cat, closeFaults, err := catalog(st.stop, st, c)
			if err != nil {
				return err
			}
			defer closeFaults()
			files := c.Args().Slice()
			exps, err := loadAll(st.stop, files, cat)
			if err != nil {
				return err
			}
			// With the summary on stdout (--summary-json -), stdout carries
			// the JSON alone: what is for people goes to stderr.
			human := st.env.Stdout
			if c.String(summaryJSONFlag) == "-" {
				human = st.env.Stderr
			}
			dash, err := startDashboard(c.String("dashboard"), human)
			if err != nil {
				return err
			}
			defer dash.close(st)
			jw, jpath, err := createJournal(st, c.String("journal"))
			if err != nil {
				return err
			}
			quiet := c.Bool("quiet")
			if !quiet {
				fmt.Fprintf(human, "journal: %s\n", jpath)
			}
			view := runView(st, human, quiet)
			var results []experiments.Result
			for i, e := range exps {
				if st.stop.Err() != nil {
					// Each file left is journalled as interrupted, so that
					// the reports say what the exit code says.
					msg := "interrupted before " + strings.Join(files[i:], ", ") + " ran"
					fmt.Fprintf(st.env.Stderr, "mailchaos: %s\n", msg)
					for k := i; k < len(exps); k++ {
						results = append(results, experiments.Skip(jw, exps[k], fmt.Sprintf("run-%d-%d", time.Now().UnixMilli(), k),
							files[k], "interrupted by a signal before it ran"))
					}
					break
				}
				if !quiet {
					fmt.Fprintf(human, "== %s (%s)\n", e.Title, files[i])
				}
				res := experiments.Run(st.stop, e, experiments.Options{
					Catalog: cat, Journal: jw, Log: st.log, View: view, Kill: st.kill,
					RunID: fmt.Sprintf("run-%d-%d", time.Now().UnixMilli(), i), File: files[i],
					Observe: dash.observe(),
				})
				results = append(results, res)
			}
			if err := jw.Close(); err != nil {
				fmt.Fprintf(st.env.Stderr, "mailchaos: %v\n", err)
			}
			if err := writeReports(st, jpath, c.String("junit"), c.String("summary"), human); err != nil {
				fmt.Fprintf(st.env.Stderr, "mailchaos: %v\n", err)
			}
			if err := writeSummaryJSON(st, jpath, c.String(summaryJSONFlag)); err != nil {
				fmt.Fprintf(st.env.Stderr, "mailchaos: %v\n", err)
			}
			if err := writeHTMLReport(jpath, c.String("html")); err != nil {
				fmt.Fprintf(st.env.Stderr, "mailchaos: %v\n", err)
			}
			if !quiet {
				fmt.Fprintf(human, "journal: %s\n", jpath)
			}
			return experiments.Outcome(results...)
		},
	}
}

// createJournal creates the run's journal: the file --journal names, else
// a new file in the user's state directory. Neither ever replaces a file or
// follows a link.
func createJournal(st *state, path string) (*journal.Writer, string, error) {
	if path == "" {
		dir, err := journal.DefaultDir(st.env.Getenv)
		if err != nil {
			return nil, "", fmt.Errorf("%w (or name a journal FILE with --journal)", err)
		}
		return journal.CreateIn(dir, "")
	}
	jw, err := journal.Create(path, "")
	if errors.Is(err, fs.ErrExist) {
		return nil, "", &usageError{fmt.Errorf("flag --journal: %s already exists (a journal is never overwritten, nor written through a link): choose another name", path)}
	}
	if err != nil {
		return nil, "", &usageError{fmt.Errorf("flag --journal: %w", err)}
	}
	return jw, path, nil
}

// writeReports renders a journal to the terminal and the report files.
func writeReports(st *state, jpath, junit, summary string, terminal io.Writer) error {
	events, err := journal.ReadFile(jpath)
	if err != nil {
		return err
	}
	runs := report.Split(events)
	if terminal != nil {
		if err := report.TerminalWith(terminal, terminalOptions(st, terminal), runs...); err != nil {
			return err
		}
	}
	write := func(path string, fn func(io.Writer, ...[]journal.Event) error) error {
		if path == "" {
			return nil
		}
		// CI reuses report paths, so a regular file is replaced; a link
		// is not followed.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
		if errors.Is(err, syscall.ELOOP) {
			// A link to a terminal or a pipe (/dev/stdout) is fine: what
			// a link must never do is make root overwrite a file.
			if st, serr := os.Stat(path); serr == nil && st.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
				f, err = os.OpenFile(path, os.O_WRONLY, 0)
			} else {
				return fmt.Errorf("%s is a symbolic link: refused, reports are not written through links", path)
			}
		}
		if err != nil {
			return err
		}
		if err := fn(f, runs...); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	if err := write(junit, report.JUnit); err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	if err := write(summary, report.Markdown); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return nil
}

func reportCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "report",
		Usage:     "render a journal again: terminal summary, JUnit XML, Markdown, JSON, HTML",
		ArgsUsage: "JOURNAL",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "junit", Usage: "write a JUnit XML report to `FILE`"},
			&ucli.StringFlag{Name: "summary", Usage: "write a Markdown summary to `FILE`"},
			&ucli.BoolFlag{Name: "json", Usage: "print the machine-readable summary (JSON, schema mailchaos.summary/v1) instead of the terminal summary"},
			htmlFlag(),
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return &usageError{errors.New("report needs exactly one JOURNAL")}
			}
			var terminal io.Writer = st.env.Stdout
			if c.Bool("json") {
				terminal = nil // stdout carries the JSON alone
			}
			if err := writeReports(st, c.Args().First(), c.String("junit"), c.String("summary"), terminal); err != nil {
				return err
			}
			if err := writeHTMLReport(c.Args().First(), c.String("html")); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeSummaryJSON(st, c.Args().First(), "-")
			}
			return nil
		},
	}
}

func recoverCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "recover",
		Usage:     "remove the faults a crashed run's journal shows as injected and not removed",
		ArgsUsage: "JOURNAL",
		Flags:     []ucli.Flag{&ucli.BoolFlag{Name: "allow-remote", Usage: "allow the journal's toxiproxy servers and admin APIs off loopback"}},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return &usageError{errors.New("recover needs exactly one JOURNAL")}
			}
			// A fault whose plugin cannot start is undone without it.
			reg, err := loadFaults(st.stop, st)
			if err != nil {
				return err
			}
			defer reg.Close()
			err = experiments.Recover(context.WithoutCancel(st.stop), c.Args().First(), experiments.RecoverOptions{
				Faults: reg, AllowRemote: c.Bool("allow-remote"), Timeout: rollbackTimeout,
				Progress: func(line string) { fmt.Fprintln(st.env.Stdout, line) },
			})
			if errors.Is(err, experiments.ErrNothingToRecover) {
				fmt.Fprintln(st.env.Stdout, err)
				return nil
			}
			return err
		},
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
