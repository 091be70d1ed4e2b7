package plugins_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/plugins"
)

// childPid reads the process ID of the test plugin's child.
func childPid(t *testing.T, pidfile string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidfile + ".child")
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(data))
		return err == nil
	}, waitFor, 10*time.Millisecond)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// TestChildHoldingStdout: a plugin's child that keeps the plugin's output
// open bounds neither a failed start nor a stop, and does not outlive the
// plugin unless it left the plugin's process group.
func TestChildHoldingStdout(t *testing.T) {
	t.Parallel()
	const startTimeout = 2 * time.Second
	cases := []struct {
		name   string
		env    []string
		starts bool
		max    time.Duration
		killed bool
	}{
		{"exits before serving", []string{"MISBEHAVE_EXIT=start"}, false, startTimeout, true},
		{"hangs before serving", []string{"MISBEHAVE_HANG=start"}, false, startTimeout + 2*time.Second, true},
		{"serves", nil, true, 5 * time.Second, true},
		{"child in a session of its own", []string{"MISBEHAVE_EXIT=start", "MISBEHAVE_CHILD_SETSID=1"}, false, startTimeout, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pid")
			env := append([]string{"MISBEHAVE_PIDFILE=" + pidfile, "MISBEHAVE_CHILD=60s"}, tc.env...)
			h := plugins.NewHost(plugins.Options{StartTimeout: startTimeout})
			begin := time.Now()
			_, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave, Env: env})
			if tc.starts {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
			h.Close()
			took := time.Since(begin)
			t.Logf("start and close took %s", took.Round(time.Millisecond))
			require.Less(t, took, tc.max)
			child := childPid(t, pidfile)
			if tc.killed {
				require.Eventually(t, func() bool { return gone(child) }, 2*time.Second, 10*time.Millisecond, "the child is gone")
			}
		})
	}
}
