package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// builtinPluginPid finds the process this test binary started to serve the
// built-in fault name as a plugin.
func builtinPluginPid(name string) (int, bool) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !bytes.Contains(env, []byte("MAILCHAOS_BUILTIN_FAULT="+name+"\x00")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid, true
		}
	}
	return 0, false
}

// TestMaintenancePluginKilledMidRunRestoresTheSite: the maintenance fault
// drains a site over the stack's admin API; when its plugin dies holding
// the drain, the host restores the site itself (the handle names the
// restore call), and the run stops with exit 3.
func TestMaintenancePluginKilledMidRunRestoresTheSite(t *testing.T) {
	t.Parallel()
	cfg, err := mailstack.ProfileConfig(mailstack.ProfileRemediated)
	require.NoError(t, err)
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx := context.Background()
	stack, err := targets.StartMailstack(ctx, cfg, nil)
	require.NoError(t, err)
	defer stack.Close(ctx)
	exp := filepath.Join(t.TempDir(), "drain.yaml")
	require.NoError(t, os.WriteFile(exp, []byte(fmt.Sprintf(`version: 1
title: a site drained by a plugin that dies
target:
  kind: external
  endpoints: { metrics: %q, imap: %q }
baseline: 1s
steady-state:
  - name: imap
    probe: tcp
    interval: 200ms
    params: { endpoint: imap }
    tolerance: { max: 1s }
method:
  - fault: maintenance
    at: 0s
    for: 1m
    params: { site: site-a, admin: metrics }
recovery: { within: 5s }
`, stack.Target.Endpoints["metrics"], stack.Target.Endpoints["imap"])), 0o644))

	var out, errb syncBuffer
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb}, "--log-level", "warn", "run", "--journal", filepath.Join(t.TempDir(), "j.jsonl"), exp)
	drained := func() bool {
		st, err := stack.Stack.Site("site-a")
		return err == nil && st.Draining
	}
	// The plugin dies holding the drain once the injection has returned
	// (its handle names the restore call); the site is drained a moment
	// before that, which a busy machine can stretch.
	require.Eventually(t, func() bool { return drained() && strings.Contains(out.String(), "inject maintenance") },
		waitFor, 10*time.Millisecond, "%s %s", out.String(), errb.String())
	pid, ok := builtinPluginPid("maintenance")
	require.True(t, ok, "the maintenance plugin's process")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	code := waitExit(t, done)
	require.Equal(t, cli.ExitAborted, code, "%s\n%s", out.String(), errb.String())
	require.Contains(t, out.String()+errb.String(), "exited unexpectedly")
	require.False(t, drained(), "the host restored the site its dead plugin had drained")
}
