package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/plugins/builtin"
)

// faultSet is the faults a command can use, and the plugin processes
// serving them; Close stops the processes.
type faultSet struct {
	*faults.Registry
	host *plugins.Host
	log  *slog.Logger
	// left are the plugins left out, in the order found.
	left []leftOut
	// listed is set once the command has shown every plugin left out.
	listed bool
}

// leftOut is a plugin that was not started, and why.
type leftOut struct {
	name string
	err  error
}

// Close stops every plugin, and warns about those left out that the
// command did not use: a fault that was used has said why it is not
// usable already, and a thing is said once.
func (f *faultSet) Close() {
	f.host.Close()
	for _, l := range f.left {
		if !f.listed && !f.Asked(l.name) {
			f.log.Warn("fault plugin left out", "plugin", l.name, "err", l.err)
		}
	}
	f.left = nil
}

// pluginEntry is one plugin a command may start: a built-in or one found
// on disk, with how it stands with plugins.lock. Its checksum is not
// computed here: go-plugin checks it against launch.Checksum when it starts
// the plugin, and only the commands that show it compute it.
type pluginEntry struct {
	launch plugins.Launch
	found  plugins.Found
	// locked is true when a lock file exists (launch.Checksum is then the
	// one it pins, "" if it has none).
	locked bool
	// refused says why the plugin may not be started (unsafe permissions,
	// plugins.lock).
	refused error
}

// pluginEntries lists the built-ins and the plugins on disk, checked
// against the lock file. Plugins named like a built-in are left out, with
// a warning.
func pluginEntries(st *state) ([]pluginEntry, error) {
	var out []pluginEntry
	if !st.builtinsInProcess {
		for _, n := range builtin.Names() {
			l, err := builtin.Launch(n)
			if err != nil {
				return nil, err
			}
			out = append(out, pluginEntry{launch: l})
		}
	}
	found, err := plugins.Discover(plugins.DefaultDirs(st.env.Getenv))
	if err != nil {
		return nil, err
	}
	lock, locked, err := plugins.ReadLock(st.lockPath)
	if err != nil {
		return nil, err
	}
	for _, f := range found {
		if slices.Contains(builtin.Names(), f.Name) {
			st.log.Warn("plugin has the name of a built-in fault; not used", "plugin", f.Name, "path", f.Path)
			continue
		}
		e := pluginEntry{found: f, launch: plugins.Launch{Name: f.Name, Path: f.Path}, locked: locked}
		if locked {
			want, ok := lock[f.Name]
			if !ok {
				e.refused = refusedError(fmt.Errorf("plugin %s (%s) is not in %s: refused; run 'mailchaos plugins lock' to trust it", f.Name, f.Path, st.lockPath))
			}
			e.launch.Checksum = want
		}
		if f.Refused != nil {
			e.refused = refusedError(fmt.Errorf("plugin %s (%s): %w", f.Name, f.Path, f.Refused))
		}
		out = append(out, e)
	}
	return out, nil
}

// refusedError is a plugin that mailchaos will not start (plugins.lock,
// unsafe permissions): the user's setup is to blame, exit code Invalid in
// every command, whether the fault is named on the command line or in a
// file.
func refusedError(err error) error { return exitcode.Wrap(err, exitcode.Invalid) }

// loadFaults starts every plugin (in parallel) and registers the faults
// they serve; with --builtins in-process, the built-ins run in mailchaos'
// own process instead. A plugin that cannot start (or that plugins.lock
// refuses) is left out with a warning, and using its fault is an error
// that says why; other faults are not affected.
func loadFaults(ctx context.Context, st *state) (*faultSet, error) {
	entries, err := pluginEntries(st)
	if err != nil {
		return nil, err
	}
	fs := &faultSet{Registry: faults.NewRegistry(), log: st.log,
		host: plugins.NewHost(plugins.Options{Logger: st.log, CallTimeout: st.pluginTimeout, Kill: st.kill})}
	fs.Hint = "plugins are looked for in " + strings.Join(plugins.DefaultDirs(st.env.Getenv), ", ") +
		" (see 'mailchaos plugins list')"
	if st.builtinsInProcess {
		for _, inj := range builtin.Injectors() {
			if err := fs.Add(ctx, inj); err != nil {
				return nil, err
			}
		}
	}
	started := make([]*plugins.Plugin, len(entries))
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		if e.refused != nil {
			errs[i] = e.refused
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			started[i], errs[i] = fs.host.Start(ctx, e.launch)
		}()
	}
	wg.Wait()
	for i, p := range started {
		if p == nil {
			err := errs[i]
			if errors.Is(err, plugins.ErrChecksum) {
				err = refusedError(err)
			}
			// Said once: by the command that uses the fault, else by
			// Close.
			fs.Refuse(entries[i].launch.Name, err)
			fs.left = append(fs.left, leftOut{name: entries[i].launch.Name, err: err})
			continue
		}
		if err := fs.Add(ctx, p); err != nil {
			fs.Close()
			return nil, err
		}
	}
	return fs, nil
}
