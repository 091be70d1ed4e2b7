package sdk_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSDKStaysLean keeps the package a plugin author imports free of the
// toxiproxy server and what it drags in, and of the reference stack: a
// plugin is the client of a toxiproxy server, never one.
func TestSDKStaysLean(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "go list -deps: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/mailchaos/mailchaos/faults/network", "the list is not the SDK's dependencies")
	forbidden := []string{
		"github.com/Shopify/toxiproxy/", // the server and its toxics
		"github.com/prometheus/",
		"github.com/rs/zerolog",
		"github.com/gorilla/mux",
		"github.com/mailchaos/mailchaos/targets/",
		"github.com/mailchaos/mailchaos/clamd",
		"github.com/mailchaos/mailchaos/experiments",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("plugins/sdk depends on %s", d)
			}
		}
	}
}
