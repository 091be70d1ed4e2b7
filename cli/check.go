package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/faults"
)

func checkCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "check",
		Usage:     "measure an experiment file's steady state alone, with no fault: the first thing to run against a new target",
		ArgsUsage: "FILE",
		Description: "Starts (or opens) the file's target, samples every SLI for --for with no fault, prints each SLI's " +
			"samples and bound and whether it held throughout, and stops what it started. A file's method may be empty; " +
			"a method, recovery bound and invariants are ignored.\n" +
			"Exit codes: 0 every SLI held; 1 one did not; 2 invalid input; 3 the check failed or was interrupted.",
		Flags: []ucli.Flag{
			&ucli.DurationFlag{Name: "for", Usage: "how long to sample (default: the file's baseline, at least " +
				experiments.MinCheckDuration.String() + ")"},
			&ucli.BoolFlag{Name: "allow-remote", Usage: "allow targets off loopback (the experiment must allow them too)"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress lines, only the SLIs' lines"},
			targetFlag(),
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return &usageError{fmt.Errorf("check needs exactly one experiment FILE, got %d arguments", c.NArg())}
			}
			if c.IsSet("for") && c.Duration("for") <= 0 {
				return &usageError{errors.New("flag --for: must be positive")}
			}
			cat, closeFaults, err := catalog(st.stop, st, c)
			if err != nil {
				return err
			}
			defer closeFaults()
			cat.SteadyStateOnly = true
			exp, err := experiments.Load(st.stop, c.Args().First(), cat)
			if err != nil {
				return err
			}
			out := st.env.Stdout
			if note := exp.CheckIgnores(); note != "" {
				fmt.Fprintln(out, note)
			}
			res, err := experiments.Check(st.stop, exp, experiments.CheckOptions{
				Catalog: cat, Log: st.log, View: runView(st, out, c.Bool("quiet")), Kill: st.kill, For: c.Duration("for"),
				Ready: func(t faults.Target) { printEndpoints(out, t) },
			})
			if len(res.SLIs) > 0 {
				if werr := res.Write(out); werr != nil {
					return errors.Join(err, werr)
				}
			}
			return err
		},
	}
}

// printEndpoints prints one NAME=ADDR line per endpoint of t, by name.
func printEndpoints(out io.Writer, t faults.Target) {
	for _, name := range slices.Sorted(maps.Keys(t.Endpoints)) {
		fmt.Fprintf(out, "%s=%s\n", name, t.Endpoints[name])
	}
}
