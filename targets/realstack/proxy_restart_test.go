package realstack_test

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// cmdline returns the command line of a running process.
func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	require.NoError(t, err)
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// TestProxyRestartKeepsTheLink kills the stack's `mailchaos proxy serve`
// (started with --links and --state) with SIGKILL while Postfix,
// clamav-milter and clamd run, and starts it again with the same command
// line: the clamd link and a link created through the API come back on
// the same ports, the fault that was on the link does not, and mail flows
// through the restored link again.
func TestProxyRestartKeepsTheLink(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	require.NoError(t, err)
	s := realstack.Start(t, realstack.Options{Mailchaos: self})
	api := network.NewClient(s.Proxy)

	subj := subject(t, "clean")
	require.NoError(t, send(t, s.SMTP, subj, "through the link"))
	waitDelivered(t, s.Maildir("tester"), subj)

	spare, err := api.CreateProxy(ctx(t), "clamd-spare", "127.0.0.1:0", s.Clamd)
	require.NoError(t, err)
	require.NoError(t, api.AddToxic(ctx(t), "clamd", network.Toxic{Name: "slow", Type: "latency", Stream: network.Downstream,
		Attributes: map[string]any{"latency": 50}}))

	pids, err := s.Processes()
	require.NoError(t, err)
	pid := pids["proxy"]
	require.NotZero(t, pid, "the stack runs mailchaos' proxy")
	args := cmdline(t, pid)
	require.Contains(t, args, "--links")
	require.Contains(t, args, "--state")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !running(pid) && closed(s.ClamdLink) }, 30*time.Second, 10*time.Millisecond)

	// Without the proxy the milter cannot reach clamd: mail is deferred.
	err = send(t, s.SMTP, subject(t, "clean"), "proxy gone")
	require.Equal(t, 4, code(err)/100, "deferred without the link: %v", err)

	var out bytes.Buffer
	restarted := exec.Command(args[0], args[1:]...)
	restarted.Stdout, restarted.Stderr = &out, &out
	restarted.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	require.NoError(t, restarted.Start())
	t.Cleanup(func() {
		_ = restarted.Process.Signal(syscall.SIGTERM)
		if err := restarted.Wait(); err != nil {
			t.Errorf("the restarted proxy serve: %v\n%s", err, out.String())
		}
	})
	require.Eventually(t, func() bool { return !closed(s.ClamdLink) && !closed(spare.Listen) }, 30*time.Second, 10*time.Millisecond,
		"the links listen again on their ports")
	t.Logf("links back %v after the restart", time.Since(start).Round(time.Millisecond))

	ps, err := api.Proxies(ctx(t))
	require.NoError(t, err)
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	slices.Sort(names)
	require.Equal(t, []string{"clamd", "clamd-spare"}, names)
	require.Equal(t, s.ClamdLink, ps["clamd"].Listen)
	require.Equal(t, s.Clamd, ps["clamd"].Upstream)
	require.Empty(t, ps["clamd"].Toxics, "the fault did not survive the restart")
	require.Equal(t, spare.Listen, ps["clamd-spare"].Listen, "the link made through the API keeps its port")

	// clamav-milter marked clamd dead while the link was gone and probes
	// it again on its own schedule: until then it defers. Mail is
	// accepted again once it has.
	scanned := scans(t, s)
	subj = subject(t, "clean")
	var deferred int
	require.Eventually(t, func() bool {
		err := send(t, s.SMTP, subj, "through the restored link")
		if err != nil {
			require.Equal(t, 4, code(err)/100, "only deferred while the milter has not noticed: %v", err)
			deferred++
		}
		return err == nil
	}, time.Minute, 100*time.Millisecond, "mail never flowed through the restored link")
	t.Logf("mail accepted through the restored link %v after the restart (%d deferred before)", time.Since(start).Round(time.Millisecond), deferred)
	waitDelivered(t, s.Maildir("tester"), subj)
	require.Eventually(t, func() bool { return scans(t, s) > scanned }, 10*time.Second, 10*time.Millisecond, "clamd scanned it")
	// The incident profile has no interceptor: the virus reaches clamd
	// through the link and is rejected.
	err = send(t, s.SMTP, subject(t, "virus"), eicar)
	require.Equal(t, 5, code(err)/100, "infected mail is rejected through the restored link: %v", err)
}
