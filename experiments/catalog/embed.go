// Package catalog holds the experiment files mailchaos ships, embedded, so
// that `mailchaos init --from NAME` can start a new experiment from one.
// The files themselves are the documentation: each one says at its top
// what it rehearses and the verdict it expects.
package catalog

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/mailchaos/mailchaos/internal/suggest"
)

//go:embed *.yaml realstack/*.yaml
var files embed.FS

// Names lists the catalog's experiments by name: the file's path without
// ".yaml" ("av-latency-incident", "realstack/postfix-milter-incident"),
// sorted.
func Names() []string {
	var names []string
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			names = append(names, strings.TrimSuffix(p, ".yaml"))
		}
		return nil
	})
	slices.Sort(names)
	return names
}

// UnknownError is a name the catalog does not have.
type UnknownError struct {
	Name  string
	Known []string
}

// Error names the nearest experiment and lists them all.
func (e *UnknownError) Error() string {
	return fmt.Sprintf("no catalog experiment %q%s; valid: %s", e.Name, suggest.Hint(e.Name, e.Known), strings.Join(e.Known, ", "))
}

// InvalidInput says the name was the user's mistake.
func (e *UnknownError) InvalidInput() bool { return true }

// Read returns the experiment file called name (with or without ".yaml").
func Read(name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".yaml")
	if !slices.Contains(Names(), name) {
		return nil, &UnknownError{Name: name, Known: Names()}
	}
	return files.ReadFile(name + ".yaml")
}
