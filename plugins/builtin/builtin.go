// Package builtin serves mailchaos' own faults (av-latency, gray-failure,
// load-surge, maintenance) as plugins: mailchaos starts itself in plugin mode for each,
// so that built-in and third-party faults take the same path through the
// plugin boundary.
package builtin

import (
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/maintenance"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/plugins/sdk"
)

// EnvVar, set to a fault's name, starts mailchaos as that fault's plugin.
const EnvVar = "MAILCHAOS_BUILTIN_FAULT"

// constructors builds each built-in fault's injector, by name.
func constructors() map[string]func() faults.Injector {
	return map[string]func() faults.Injector{
		avlatency.Name:   func() faults.Injector { return avlatency.New() },
		grayfailure.Name: func() faults.Injector { return grayfailure.New() },
		loadsurge.Name:   func() faults.Injector { return loadsurge.New() },
		maintenance.Name: func() faults.Injector { return maintenance.New() },
	}
}

// Injectors returns a new injector of every built-in fault, in name order,
// to run in-process.
func Injectors() []faults.Injector {
	var out []faults.Injector
	for _, n := range Names() {
		out = append(out, constructors()[n]())
	}
	return out
}

// Names lists the built-in faults, sorted.
func Names() []string { return slices.Sorted(maps.Keys(constructors())) }

// Requested returns the fault this process was started to serve, if any.
func Requested(getenv func(string) string) (string, bool) {
	name := getenv(EnvVar)
	return name, name != ""
}

// Serve serves the named built-in fault until mailchaos stops the plugin,
// and returns the process exit code.
func Serve(name string) int {
	mk, ok := constructors()[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "mailchaos: %s=%q: no such built-in fault (built-in: %v)\n", EnvVar, name, Names())
		return 2
	}
	sdk.Serve(mk())
	return 0
}

// Launch returns how to start the named built-in fault's plugin: this very
// executable, in plugin mode.
func Launch(name string) (plugins.Launch, error) {
	if !slices.Contains(Names(), name) {
		return plugins.Launch{}, fmt.Errorf("no built-in fault %q", name)
	}
	exe, err := os.Executable()
	if err != nil {
		return plugins.Launch{}, fmt.Errorf("find the mailchaos executable: %w", err)
	}
	return plugins.Launch{Name: name, Path: exe, Env: []string{EnvVar + "=" + name}, Builtin: true}, nil
}
