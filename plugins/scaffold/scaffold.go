// Package scaffold writes a new fault plugin module: main.go, an injector
// skeleton, a test running the conformance kit, a Makefile and a README,
// which build and pass their tests as written.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

//go:embed template/*.tmpl
var templates embed.FS

// Options say what to write.
type Options struct {
	// Name is the fault's name: lower-case letters, digits and dashes.
	Name string
	// Dir is the new module's directory; it must not exist or be empty.
	Dir string
	// Module is the module path; the default is
	// example.com/mailchaos-fault-NAME.
	Module string
	// SDKDir, if set, is a local mailchaos checkout the module uses
	// through a replace directive.
	SDKDir string
	// Version is the mailchaos module version to require.
	Version string
	// Reserved are names a plugin may not take (the built-in faults').
	Reserved []string
}

// InputError is a scaffold request that cannot be met as given.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// InvalidInput marks the error as the user's input (exit 2).
func (e *InputError) InvalidInput() bool { return true }

// NameError is an invalid plugin name.
type NameError struct{ Name string }

func (e *NameError) Error() string {
	return fmt.Sprintf("plugin name %q: want lower-case letters, digits and dashes, starting with a letter (for example smtp-tarpit)", e.Name)
}

// InvalidInput marks the error as the user's input (exit 2).
func (e *NameError) InvalidInput() bool { return true }

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// placeholderVersion is required when a replace directive provides the
// module.
const placeholderVersion = "v0.0.0-00010101000000-000000000000"

// Write writes the module and returns the files it wrote.
func Write(o Options) ([]string, error) {
	if !validName.MatchString(o.Name) {
		return nil, &NameError{o.Name}
	}
	if o.Module == "" {
		o.Module = "example.com/mailchaos-fault-" + o.Name
	}
	if slices.Contains(o.Reserved, o.Name) {
		return nil, &InputError{fmt.Sprintf("plugin name %q is a built-in fault's; a plugin of that name would not be used (built-in: %s)",
			o.Name, strings.Join(o.Reserved, ", "))}
	}
	if o.SDKDir != "" {
		abs, err := filepath.Abs(o.SDKDir)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(abs, "plugins", "sdk")); err != nil {
			return nil, &InputError{fmt.Sprintf("--sdk %s: not a mailchaos checkout (no plugins/sdk)", o.SDKDir)}
		}
		// A relative path stays relative (to the new module), so that the
		// module works for whoever has the same layout.
		given := o.SDKDir
		o.SDKDir = abs
		if !filepath.IsAbs(given) {
			if dir, err := filepath.Abs(o.Dir); err == nil {
				if rel, err := filepath.Rel(dir, abs); err == nil {
					o.SDKDir = rel
				}
			}
		}
		o.Version = placeholderVersion
	}
	if o.Version == "" {
		return nil, errors.New("no mailchaos version to require: give --sdk with a local mailchaos checkout")
	}
	if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
		return nil, &InputError{fmt.Sprintf("%s is not empty; choose a new directory", o.Dir)}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	names, err := fs.Glob(templates, "template/*.tmpl")
	if err != nil {
		return nil, err
	}
	var wrote []string
	for _, n := range names {
		t, err := template.ParseFS(templates, n)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, o); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out := filepath.Join(o.Dir, strings.TrimSuffix(filepath.Base(n), ".tmpl"))
		if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
			return nil, err
		}
		wrote = append(wrote, out)
	}
	return wrote, nil
}

// Tidy runs `go mod tidy` in dir, which writes go.sum.
func Tidy(dir string) error {
	cmd := exec.Command("go", "mod", "tidy")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod tidy in %s: %w\n%s", dir, err, out)
	}
	return nil
}
