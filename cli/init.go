package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	shipped "github.com/mailchaos/mailchaos/experiments/catalog"
	"github.com/mailchaos/mailchaos/internal/safefile"
)

// starterExperiment is what `mailchaos init FILE` writes: a short
// experiment on the embedded stack, every field explained.
const starterExperiment = `# A first experiment: one anti-virus engine of the embedded reference mail
# stack turns slow on infected scans while a little infected mail arrives.
# With the remediated settings the stack defers what it cannot scan in time,
# so clean mail keeps flowing. Run it with:
#
#   mailchaos run FILE
#
# Exit codes: 0 the hypothesis and the recovery bound held, 1 they did not,
# 2 this file is invalid, 3 the run itself failed. docs/experiments.md has
# every field; 'mailchaos faults' lists the faults and their parameters.
version: 1                       # the file format's version
title: One slow AV engine, remediated settings
target:
  kind: mailstack                # the embedded reference stack, on free loopback ports
  profile: remediated            # its scanning policy: remediated or incident
baseline: 2s                     # how long the steady state is checked before any fault
steady-state:                    # what "healthy" means, measured from outside
  - name: delivery               # a name of your own, used in reports
    probe: smtp-canary           # a canary message: SMTP in, IMAP out
    interval: 500ms              # one canary every 500 ms
    timeout: 20s                 # a canary not delivered by then counts as failed
    tolerance: { max: 3s }       # healthy: delivered within 3 s
method:                          # the faults, on a timeline from the end of the baseline
  - fault: av-latency            # slow or failing anti-virus engines
    at: 0s                       # starts at once ...
    for: 10s                     # ... and is removed 10 s later
    link: av-engine-2            # on the MTA -> av-engine-2 hop only
    params: { latency: 5s }      # infected scans take 5 s longer
  - fault: load-surge            # open-loop SMTP load while the engine is slow
    at: 0s
    for: 10s
    params: { rate: 20/s, infected: 0.1 }   # 20 msg/s, 10 % carrying the EICAR test file
recovery:
  within: 10s                    # every SLI back in tolerance within 10 s of the fault's end ...
  hold: 2s                       # ... and staying there for 2 s
invariants: [no-mail-lost, infected-never-delivered]   # checked on the mailboxes after the run
safety:
  max-duration: 1m               # the run is stopped (faults removed) if it lasts longer
`

func initCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:      "init",
		Usage:     "write an experiment file to start from: a short commented one, or a copy of a catalog experiment",
		ArgsUsage: "FILE",
		Description: "Without --from, FILE is a short experiment on the embedded stack (a steady state, one fault,\n" +
			"a recovery bound), each field commented. --from NAME copies one of the shipped experiments\n" +
			"(" + strings.Join(shipped.Names(), ", ") + ").\n" +
			"An existing FILE is left alone unless --force.\n\n" +
			"Example:\n" +
			"  mailchaos init my-experiment.yaml && mailchaos run my-experiment.yaml\n" +
			"  mailchaos init --from av-latency-incident incident.yaml",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "from", Usage: "copy the catalog experiment `NAME` instead"},
			&ucli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return &usageError{fmt.Errorf("init needs exactly one FILE, got %d arguments", c.NArg())}
			}
			path := c.Args().First()
			data := []byte(strings.Replace(starterExperiment, "FILE", path, 1))
			if name := c.String("from"); name != "" {
				b, err := shipped.Read(name)
				if err != nil {
					return &usageError{fmt.Errorf("flag --from: %w", err)}
				}
				data = b
			}
			if err := writeNew(path, data, c.Bool("force")); err != nil {
				return err
			}
			fmt.Fprintf(st.env.Stdout, "wrote %s; next: mailchaos validate %s, then mailchaos run %s\n", path, path, path)
			return nil
		},
	}
}

// writeNew writes data to path through a new file in the same directory,
// so that nothing is written through a symlink: linked into place when
// path must not exist (atomic, no clobbering even in a race), renamed over
// it with force (a symlink at path is then replaced, not followed).
func writeNew(path string, data []byte, force bool) error {
	mode := safefile.Create
	if force {
		mode = safefile.Force
	}
	err := safefile.Write(path, data, 0o644, mode)
	switch {
	case errors.Is(err, fs.ErrExist):
		what := "exists"
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			what = "exists (a symlink)"
		}
		return &usageError{fmt.Errorf("%s %s: not written; --force replaces it", path, what)}
	case errors.Is(err, safefile.ErrNotRegular):
		return &usageError{err}
	}
	return err
}
