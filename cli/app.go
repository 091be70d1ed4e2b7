// Package cli is the mailchaos command line: it parses flags, calls the
// package that does the work and maps the outcome to an exit code (the
// table is internal/exitcode's). It never calls os.Exit; main does, with Run's
// result.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
	"github.com/mailchaos/mailchaos/plugins"
)

// Version is the mailchaos version, set at build time with
// -ldflags "-X github.com/mailchaos/mailchaos/cli.Version=..." (make build
// does). Empty, the version comes from the build information: see
// [BuildVersion].
var Version = "" //nolint:gochecknoglobals // set by the linker

// Env is everything a command touches outside its own arguments, injected so
// that commands are testable in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Signals delivers SIGINT/SIGTERM. The first one asks the running
	// command to stop gracefully (roll back, drain); the second one makes it
	// stop at once. Nil means no signals.
	Signals <-chan os.Signal
	// StopSignals, if set, is called after the second signal: main stops
	// catching signals then, so that a third one ends the process at once.
	StopSignals func()
}

// state is what every command gets: the environment plus the two stop
// contexts fed by signals.
type state struct {
	env Env
	// stop ends at the first signal: stop gracefully.
	stop context.Context
	// kill ends at the second signal: stop now.
	kill context.Context
	log  *slog.Logger
	// pluginTimeout bounds each call to a fault plugin.
	pluginTimeout time.Duration
	// builtinsInProcess runs the built-in faults inside mailchaos' own
	// process instead of behind the plugin boundary.
	builtinsInProcess bool
	// lockPath is the plugins.lock file.
	lockPath string
}

// Run runs the mailchaos command line with args (args[0] is the program
// name) and returns the process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	stop, stopCancel := context.WithCancel(ctx)
	defer stopCancel()
	kill, killCancel := context.WithCancel(ctx)
	defer killCancel()
	if env.Signals != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				case sig := <-env.Signals:
					if n == 0 {
						fmt.Fprintf(env.Stderr, "mailchaos: %s: stopping gracefully (again to stop at once)\n", sig)
						stopCancel()
						continue
					}
					fmt.Fprintf(env.Stderr, "mailchaos: %s: stopping now\n", sig)
					killCancel()
					if env.StopSignals != nil {
						env.StopSignals()
					}
					return
				}
			}
		}()
	}
	st := &state{env: env, stop: stop, kill: kill}
	app := newApp(st)
	if len(args) < 2 || args[1] != completeCommand {
		// The completion scripts pass the words as they are.
		args = interspersed(app, args)
	}
	err := app.RunContext(stop, args)
	if d := danglingFlag(app, args); d != nil && err != nil {
		// The flag took the next argument, or none, as its value.
		err = d
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailchaos: %v\n", err)
	}
	return int(exitcode.Of(err))
}

func newApp(st *state) *ucli.App {
	app := &ucli.App{
		Name:      "mailchaos",
		Usage:     "chaos engineering for e-mail systems",
		UsageText: "mailchaos [global options] COMMAND [options] [arguments]",
		Version:   BuildVersion(),
		// The version flag is -V/--version (below): -v is --verbose.
		HideVersion: true,
		Reader:      st.env.Stdin,
		Writer:      st.env.Stdout,
		ErrWriter:   st.env.Stderr,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error"},
			&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logs: the same as --log-level debug"},
			&ucli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"},
			// urfave/cli adds its help flag only with its own help
			// command, which helpCommand replaces.
			&ucli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"},
			&ucli.DurationFlag{Name: "plugin-timeout", Value: plugins.DefaultCallTimeout, Usage: "longest a fault plugin may take to answer a call before it is killed and its faults removed"},
			&ucli.StringFlag{Name: "plugins-lock", Value: plugins.LockFile, Usage: "the `FILE` of plugin checksums; when it exists, plugins that differ or are missing from it are refused"},
			&ucli.StringFlag{Name: "max-file-size", Usage: "largest experiment, target or configuration `SIZE` read (default 1MiB; also $" + yamlfile.MaxFileSizeEnv + ")"},
			&ucli.StringFlag{Name: "builtins", Value: "plugin", Usage: "run the built-in faults as plugins (`plugin`, the default) or inside mailchaos (in-process)", Hidden: true},
		},
		Before: func(c *ucli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return &usageError{fmt.Errorf("flag --log-level: %q is not one of debug, info, warn, error", c.String("log-level"))}
			}
			if c.Bool("verbose") {
				lvl = slog.LevelDebug
			}
			st.log = slog.New(slog.NewTextHandler(st.env.Stderr, &slog.HandlerOptions{Level: lvl}))
			if st.pluginTimeout = c.Duration("plugin-timeout"); st.pluginTimeout <= 0 {
				return &usageError{errors.New("flag --plugin-timeout: must be positive")}
			}
			switch c.String("builtins") {
			case "plugin":
			case "in-process":
				st.builtinsInProcess = true
			default:
				return &usageError{fmt.Errorf("flag --builtins: %q is not one of plugin, in-process", c.String("builtins"))}
			}
			st.lockPath = c.String("plugins-lock")
			if v := c.String("max-file-size"); v != "" {
				if _, err := yamlfile.ParseSize(v); err != nil {
					return &usageError{fmt.Errorf("flag --max-file-size: %w", err)}
				}
				// Every file reader takes the limit from the environment.
				if err := os.Setenv(yamlfile.MaxFileSizeEnv, v); err != nil {
					return err
				}
			}
			return nil
		},
		// Without a command: the version with -V, else the help.
		Action: func(c *ucli.Context) error {
			if c.Bool("version") {
				return printVersion(st.env.Stdout)
			}
			if c.Args().Present() {
				return unknownCommand(c.Args().First(), "mailchaos", c.App.Commands)
			}
			return ucli.ShowAppHelp(c)
		},
		Commands: []*ucli.Command{
			initCommand(st),
			runCommand(st),
			checkCommand(st),
			validateCommand(st),
			reportCommand(st),
			recoverCommand(st),
			schemaCommand(st),
			injectCommand(st),
			faultsCommand(st),
			targetCommand(st),
			surgeCommand(st),
			proxyCommand(st),
			pluginsCommand(st),
			pluginCommand(st),
			versionCommand(st),
			completionCommand(st),
			completeHiddenCommand(st),
			helpCommand(),
		},
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*ucli.Context, error) {},
		OnUsageError: func(c *ucli.Context, err error, _ bool) error {
			return flagError(err, "mailchaos", c.App.Flags)
		},
	}
	setUsageErrors(app.Commands, "mailchaos")
	return app
}

// setUsageErrors makes a bad flag of any command an invalid-input error
// that suggests the nearest flag, and gives every command that groups
// subcommands the help template that lists them.
func setUsageErrors(cmds []*ucli.Command, parent string) {
	for _, c := range cmds {
		path := parent + " " + c.Name
		if parent != "mailchaos" {
			// urfave/cli names the application's own commands itself
			// (and would prefix a name set here).
			c.HelpName = path
		}
		flags := c.Flags
		c.OnUsageError = func(_ *ucli.Context, err error, _ bool) error { return flagError(err, path, flags) }
		if len(c.Subcommands) > 0 {
			c.CustomHelpTemplate = groupHelpTemplate
			c.HideHelpCommand = true
		}
		setUsageErrors(c.Subcommands, path)
	}
}

// groupHelpTemplate is the help of a command that groups subcommands:
// urfave/cli's own lists them only once the command has run, so that
// "mailchaos help target" listed none.
const groupHelpTemplate = `NAME:
   {{.HelpName}} - {{.Usage}}

USAGE:
   {{.HelpName}} COMMAND [options] [arguments]{{if .Description}}

DESCRIPTION:
   {{template "descriptionTemplate" .}}{{end}}

COMMANDS:{{range .VisibleCommands}}
   {{join .Names ", "}}{{"\t"}}{{.Usage}}{{end}}

Run '{{.HelpName}} COMMAND --help' for a command's options.
`

// helpCommand prints the help of the application or of any command, at
// any depth: "mailchaos help proxy links sync".
func helpCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "help",
		Aliases:   []string{"h"},
		Usage:     "show the commands, or the help of one command",
		ArgsUsage: "[COMMAND [SUBCOMMAND...]]",
		Action: func(c *ucli.Context) error {
			if !c.Args().Present() {
				return ucli.ShowAppHelp(c)
			}
			cmds, path := c.App.Commands, "mailchaos"
			var cmd *ucli.Command
			for _, a := range c.Args().Slice() {
				next := findCommand(cmds, a)
				if next == nil {
					return unknownCommand(a, path, cmds)
				}
				cmd, cmds, path = next, next.Subcommands, path+" "+next.Name
			}
			tmpl := cmd.CustomHelpTemplate
			if tmpl == "" {
				tmpl = ucli.CommandHelpTemplate
			}
			ucli.HelpPrinter(c.App.Writer, tmpl, cmd)
			return nil
		},
	}
}

// findCommand is the command of cmds called name (or an alias), or nil.
func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagError is err, an error of Go's flag parser for the command path,
// reworded where it names a flag ("unknown flag --jnuit; did you mean
// --junit?"), as an invalid-input error.
func flagError(err error, path string, flags []ucli.Flag) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		names = append(names, "help")
		hint := ""
		if n := suggest.Nearest(name, names); n != "" {
			hint = "; did you mean " + dashes(n) + "?"
		}
		return &usageError{fmt.Errorf("unknown flag %s for %q%s (see '%s --help')", dashes(name), path, hint, path)}
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return &usageError{fmt.Errorf("flag %s of %q needs a value", dashes(strings.TrimLeft(name, "-")), path)}
	}
	if m := invalidFlagValue.FindStringSubmatch(msg); m != nil {
		return &usageError{fmt.Errorf("flag %s of %q: invalid value %s: %s", dashes(m[2]), path, m[1], m[3])}
	}
	return &usageError{err}
}

// invalidFlagValue is Go's flag parser's message for a value it cannot
// parse.
var invalidFlagValue = regexp.MustCompile(`^invalid value (".*") for flag -+([^:]+): (.*)$`) //nolint:gochecknoglobals // compiled once, read only

// dashes is a flag name as it is written: -V, --junit.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is the error for a command name that path does not have,
// with the nearest one.
func unknownCommand(name, path string, cmds []*ucli.Command) error {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	hint := suggest.Hint(name, names)
	if hint == "" {
		hint = "; valid: " + strings.Join(names, ", ")
	}
	of := ""
	if path != "mailchaos" {
		of = fmt.Sprintf(" for %q", path)
	}
	return &usageError{fmt.Errorf("unknown command %q%s%s (see '%s --help')", name, of, hint, path)}
}

// commandPath is the full command line of c's command, e.g.
// "mailchaos target serve".
func commandPath(c *ucli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// subcommandRequired is the action of a command that only groups
// subcommands: it rejects an unknown one instead of printing help and
// succeeding.
func subcommandRequired(c *ucli.Context) error {
	path := commandPath(c)
	if c.Args().Present() {
		return unknownCommand(c.Args().First(), path, c.Command.Subcommands)
	}
	var names []string
	for _, sc := range c.Command.VisibleCommands() {
		names = append(names, sc.Name)
	}
	return &usageError{fmt.Errorf("%s needs a subcommand: %s (see '%s --help')", path, strings.Join(names, ", "), path)}
}

// interspersed lets flags follow positional arguments, as in
// "mailchaos inject av-latency --for 1m", which urfave/cli v2 does not
// parse: it moves the leaf command's flags (and their values) before its
// positional arguments. Everything after "--" is left alone.
func interspersed(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds, flags := app.Commands, app.Flags
	i := 1
	// Walk global flags and the command path.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			i++
			continue
		}
		var next *ucli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		cmds, flags = next.Subcommands, next.Flags
		i++
		if len(cmds) == 0 {
			break
		}
	}
	var positional []string
	dangling := ""
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-" && takesValue(flags, a) && i+1 == len(args):
			// A flag with its value missing stays last (danglingFlag
			// reports it).
			dangling = a
		case strings.HasPrefix(a, "-") && a != "-":
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
		default:
			positional = append(positional, a)
		}
	}
	out = append(out, positional...)
	if dangling != "" {
		out = append(out, dangling)
	}
	return out
}

// danglingFlag is the error for a command line that ends in a flag that
// takes a value (after interspersed), or nil.
func danglingFlag(app *ucli.App, args []string) error {
	if len(args) < 2 {
		return nil
	}
	last := args[len(args)-1]
	if !strings.HasPrefix(last, "-") {
		return nil
	}
	cmds, flags, path := app.Commands, app.Flags, "mailchaos"
	for _, a := range args[1 : len(args)-1] {
		if c := findCommand(cmds, a); c != nil {
			cmds, flags, path = c.Subcommands, c.Flags, path+" "+c.Name
		}
	}
	if !takesValue(flags, last) {
		return nil
	}
	return &usageError{fmt.Errorf("flag %s of %q needs a value", last, path)}
}

// takesValue reports whether the flag token a (without "=value") names a
// flag of flags that takes a separate value.
func takesValue(flags []ucli.Flag, a string) bool {
	if strings.Contains(a, "=") {
		return false
	}
	name := strings.TrimLeft(a, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*ucli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
