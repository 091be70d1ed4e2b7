package cli

import (
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"

	ucli "github.com/urfave/cli/v2"
)

// BuildVersion is mailchaos' version: the one set with -ldflags -X (make
// build: git describe); else the module version of a `go install
// ...@vX` build; else the VCS revision of a `go build` in a clone, with
// "+dirty" when the tree had changes; else "dev".
func BuildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return resolveVersion(Version, bi)
}

// pseudoVersion matches a Go pseudo-version (v0.0.0-20260102150405-
// abcdef123456), which go build stamps from a clone's commit: the
// revision says the same, shorter.
var pseudoVersion = regexp.MustCompile(`-(0\.)?(\d+\.)?\d{14}-[0-9a-f]{12}(\+dirty)?$`) //nolint:gochecknoglobals // compiled once, read only

// resolveVersion is BuildVersion for a linker-set version and the build
// information (nil when there is none).
func resolveVersion(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" && !pseudoVersion.MatchString(v) {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// printVersion prints the version, the Go version and the platform.
func printVersion(w io.Writer) error {
	_, err := fmt.Fprintf(w, "mailchaos %s\ngo: %s\nplatform: %s/%s\n", BuildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

func versionCommand(st *state) *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version of mailchaos, the Go version it was built with and the platform",
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return &usageError{fmt.Errorf("version takes no arguments, got %q", c.Args().First())}
			}
			return printVersion(st.env.Stdout)
		},
	}
}
