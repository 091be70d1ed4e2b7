package plugins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Prefix starts the file name of every plugin executable:
// mailchaos-fault-NAME serves the fault NAME.
const Prefix = "mailchaos-fault-"

// Found is a plugin executable found on disk.
type Found struct {
	// Name is the fault name the file name promises.
	Name string
	// Path is the executable.
	Path string
	// Shadowed lists executables of the same name in later directories,
	// which are not used.
	Shadowed []string
	// Refused is an [*UnsafeError] when the executable or its directory
	// can be changed by someone other than root and the user running
	// mailchaos: the plugin must not be started.
	Refused error
}

// DefaultDirs are the directories searched for plugins, first match wins:
// ./plugins.d, then each directory of $MAILCHAOS_PLUGIN_PATH (separated
// like $PATH), then the user's config directory
// ($XDG_CONFIG_HOME/mailchaos/plugins, or ~/.config/mailchaos/plugins).
func DefaultDirs(getenv func(string) string) []string {
	dirs := []string{"plugins.d"}
	for _, d := range filepath.SplitList(getenv("MAILCHAOS_PLUGIN_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	switch {
	case getenv("XDG_CONFIG_HOME") != "":
		dirs = append(dirs, filepath.Join(getenv("XDG_CONFIG_HOME"), "mailchaos", "plugins"))
	case getenv("HOME") != "":
		dirs = append(dirs, filepath.Join(getenv("HOME"), ".config", "mailchaos", "plugins"))
	}
	return dirs
}

// Discover lists the plugin executables in dirs: regular files named
// mailchaos-fault-NAME with an execute bit. A directory that does not exist
// is skipped; one that cannot be read is an error. When two directories
// have the same plugin, the first one wins and the other is reported as
// shadowed. Each plugin is checked with [CheckFile]; an unsafe one is
// listed with Refused set.
func Discover(dirs []string) ([]Found, error) {
	byName := map[string]*Found{}
	var errs []error
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin directory %s: %w", dir, err))
			continue
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), Prefix)
			if !ok || name == "" {
				continue
			}
			path := filepath.Join(dir, e.Name())
			info, err := os.Stat(path)
			if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
				continue
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			if f, dup := byName[name]; dup {
				f.Shadowed = append(f.Shadowed, path)
				continue
			}
			byName[name] = &Found{Name: name, Path: path, Refused: CheckFile(path)}
		}
	}
	out := make([]Found, 0, len(byName))
	for _, f := range byName {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}
