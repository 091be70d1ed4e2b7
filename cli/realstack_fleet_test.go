package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// serveProcess runs `mailchaos proxy serve --listen 127.0.0.1:0 args...`
// from the binary, in a process of its own (as a host's service runs it),
// until it has printed its API URL and a line for each of links. It
// returns the URL and each link's listen address; the process is stopped
// with SIGTERM at the end of the test and must exit 0.
func serveProcess(t *testing.T, args []string, links ...string) (string, map[string]string) {
	t.Helper()
	var out, errb syncBuffer
	cmd := exec.Command(mailchaosBinary(t), append([]string{"--log-level", "warn", "proxy", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	startService(t, cmd, &errb)
	require.Eventually(t, func() bool {
		s := out.String()
		if !strings.Contains(s, "toxiproxy=") {
			return false
		}
		for _, l := range links {
			if !strings.Contains(s, "link "+l+": ") {
				return false
			}
		}
		return true
	}, waitFor, 10*time.Millisecond, "proxy serve did not start:\n%s\n%s", &out, &errb)
	addrs := map[string]string{}
	for _, l := range links {
		addrs[l] = servedLink(t, out.String(), l)
	}
	return endpoints(t, &out, "toxiproxy")["toxiproxy"], addrs
}

// fleetOnRealStack runs one experiment whose links live on three toxiproxy
// servers, as on three hosts: the stack's own proxy (the milter → clamd
// link), one in front of Postfix (mx) and one in front of Dovecot (imap),
// the last two `proxy serve` processes that create their links from a
// links file at start. A fault goes on each link at once; the canary,
// which crosses all three, fails while they last and recovers after. Each
// server is seen holding the run's toxic, and none is left on any of them.
func fleetOnRealStack(t *testing.T, stack *realstack.Stack) {
	var tester realstack.User
	for _, u := range stack.Users {
		if u.Login == "tester" {
			tester = u
		}
	}
	require.NotEmpty(t, tester.Login)
	dir := t.TempDir()
	mxURL, mx := serveProcess(t, []string{"--links", writeAt(t, filepath.Join(dir, "mx.yaml"),
		fmt.Sprintf("links:\n  - { name: mx, listen: \"127.0.0.1:0\", upstream: %q }\n", stack.SMTP))}, "mx")
	imapURL, imapLink := serveProcess(t, []string{"--links", writeAt(t, filepath.Join(dir, "imap.yaml"),
		fmt.Sprintf("links:\n  - { name: imap, listen: \"127.0.0.1:0\", upstream: %q }\n", stack.IMAP))}, "imap")

	exp := writeAt(t, filepath.Join(dir, "fleet.yaml"), fmt.Sprintf(`version: 1
title: one experiment, links on three hosts
target:
  kind: external
  toxiproxy: %[1]s
  endpoints: { smtp: %[2]q, imap: %[3]q }
  users:
    - { address: %[4]s, login: %[5]s, password: %[6]q }
  links:
    - { name: clamd, upstream: %[7]q }
    - { name: mx, upstream: %[8]q, toxiproxy: %[9]s }
    - { name: imap, upstream: %[10]q, toxiproxy: %[11]s }
baseline: 4s
steady-state:
  - name: delivery
    probe: smtp-canary
    interval: 1s
    timeout: 10s
    params: { from: sender@realstack.test, to: %[4]s }
    tolerance: { max: 5s }
method:
  - { name: av-slow, fault: av-latency, at: 0s, for: 8s, link: clamd, params: { latency: 300ms } }
  - { name: mx-dark, fault: gray-failure, at: 0s, for: 8s, link: mx, params: { mode: blackhole } }
  - { name: imap-reset, fault: gray-failure, at: 0s, for: 8s, link: imap, params: { mode: reset } }
recovery:
  within: 30s
  hold: 2s
safety:
  max-duration: 2m
`, stack.Proxy, mx["mx"], imapLink["imap"], tester.Address, tester.Login, tester.Password,
		stack.Clamd, stack.SMTP, mxURL, stack.IMAP, imapURL))

	servers := map[string]string{"clamd": stack.Proxy, "mx": mxURL, "imap": imapURL}
	// Watch each server for the run's toxic while the experiment runs.
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan string, 16)
	var wg sync.WaitGroup
	for link, url := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := network.NewClient(url)
			for ctx.Err() == nil {
				if ts, err := c.Toxics(ctx, link); err == nil && len(ts) > 0 {
					seen <- link
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	jpath := filepath.Join(dir, "journal.jsonl")
	code, out, stderr := runBinary(t, "--log-level", "warn", "run", "-q", "--journal", jpath, exp)
	cancel()
	wg.Wait()
	close(seen)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	var got []string
	for l := range seen {
		got = append(got, l)
	}
	require.ElementsMatch(t, []string{"clamd", "mx", "imap"}, got, "a server never held its fault")

	evs, err := journal.ReadFile(jpath)
	require.NoError(t, err)
	require.Empty(t, journal.Outstanding(evs))
	injected := map[string]bool{}
	for _, ev := range evs {
		if ev.Type == journal.TypeInject && ev.Handle != nil {
			for _, ref := range ev.Handle.Toxics {
				injected[ev.Handle.ServerOf(ref)] = true
			}
		}
	}
	require.Len(t, injected, 3, "the journal names the three servers: %v", injected)
	for _, ev := range evs {
		if ev.Type == journal.TypeVerdict {
			for _, s := range ev.Summary.SLIs {
				t.Logf("%s: baseline %g worst %g (%d failed) recovered in %s", s.Name, s.Baseline, s.Worst, s.FailedSamples, s.TimeToRecover)
			}
		}
	}
	for link, url := range servers {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		ts, err := network.NewClient(url).Toxics(cctx, link)
		ccancel()
		require.NoError(t, err)
		require.Empty(t, ts, "a toxic was left on %s at %s", link, url)
	}
	_ = os.Remove(jpath)
}
