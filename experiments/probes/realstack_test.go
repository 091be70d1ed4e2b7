package probes_test

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// realTarget is the target the probes see on a real stack.
func realTarget(s *realstack.Stack) faults.Target {
	t := faults.Target{Endpoints: map[string]string{"smtp": s.SMTP, "imap": s.IMAP}}
	for _, u := range s.Users {
		t.Users = append(t.Users, faults.User{Address: u.Address, Login: u.Login, Password: u.Password})
	}
	return t
}

// maildirWatch records, for each message that appears in a Maildir, its
// X-Mailchaos-Id and the modification time Postfix's delivery agent gave
// the file: the moment the message was delivered, seen independently of
// IMAP. inotify tells it of each new file in new/ at once, long before the
// probe can expunge it (that takes several IMAP round trips).
type maildirWatch struct {
	mu        sync.Mutex
	delivered map[string]time.Time
	events    *os.File
	done      chan struct{}
}

func watchMaildir(t *testing.T, dir string) *maildirWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	require.NoError(t, err)
	_, err = unix.InotifyAddWatch(fd, filepath.Join(dir, "new"), unix.IN_CREATE|unix.IN_MOVED_TO)
	require.NoError(t, err)
	// A non-blocking descriptor goes to the runtime's poller: Close ends a
	// Read in progress.
	w := &maildirWatch{delivered: map[string]time.Time{}, events: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		buf := make([]byte, 64*1024)
		for {
			n, err := w.events.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				w.record(dir, name)
			}
		}
	}()
	t.Cleanup(func() { _ = w.events.Close(); <-w.done })
	return w
}

// record notes the message file name, in new/ or, once a client has seen
// it, in cur/ with its flags appended.
func (w *maildirWatch) record(dir, name string) {
	paths := []string{filepath.Join(dir, "new", name)}
	more, _ := filepath.Glob(filepath.Join(dir, "cur", name+"*"))
	for _, path := range append(paths, more...) {
		info, err := os.Stat(path)
		if err != nil {
			continue
		}
		if id := mailchaosID(path); id != "" {
			w.mu.Lock()
			w.delivered[id] = info.ModTime()
			w.mu.Unlock()
			return
		}
	}
}

func (w *maildirWatch) at(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.delivered[id]
	return at, ok
}

// mailchaosID reads the X-Mailchaos-Id header of a message file.
func mailchaosID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			return ""
		}
		if v, ok := strings.CutPrefix(line, probes.HeaderCanaryID+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestCanaryAccuracyOnDovecot measures the canary against Debian's Postfix
// and Dovecot: each sample's value is compared with the delivery time the
// Maildir itself shows (the file's modification time, written by Postfix's
// virtual(8) agent), and the canary must be late by no more than one poll
// interval and a round trip. Dovecot reports new mail in a selected mailbox
// only when asked (NOOP): a canary that only searched read 0.4-4.4 s in a
// repeating cycle here. Seen canaries are deleted, unless kept.
func TestCanaryAccuracyOnDovecot(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{Profile: realstack.ProfileIncident})
	target := realTarget(stack)
	watch := watchMaildir(t, stack.Maildir("tester"))
	for _, keep := range []bool{false, true} {
		name := map[bool]string{false: "deleting", true: "keep"}[keep]
		t.Run(name, func(t *testing.T) {
			const poll, n = 20 * time.Millisecond, 20
			params := faults.Params{"from": "sender@realstack.test", "to": "tester@realstack.test",
				"poll": poll.String(), "keep": strconv.FormatBool(keep)}
			_, perrs := faults.Check(probes.CanaryKind().Spec(), params)
			require.Empty(t, perrs)
			runID := "accuracy-" + name
			p, err := probes.CanaryKind().New(probes.Config{Name: "sli", Params: params, Target: target, RunID: runID})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, p.Close()) })
			var errs []time.Duration
			for i := 1; i <= n; i++ {
				smp := measure(p, 30*time.Second)
				require.False(t, smp.Failed, "sample %d: %s", i, smp.Err)
				id := runID + "-sli-" + strconv.Itoa(i)
				var delivered time.Time
				require.Eventually(t, func() bool {
					var ok bool
					delivered, ok = watch.at(id)
					return ok
				}, waitFor, time.Millisecond, "canary %s never showed in the Maildir", id)
				// From the sample's own start, not the test's: on a busy
				// machine the two are apart by a scheduling delay.
				truth := delivered.Sub(smp.At)
				errs = append(errs, time.Duration(smp.Value*float64(time.Second))-truth)
			}
			sort.Slice(errs, func(i, j int) bool { return errs[i] < errs[j] })
			p50, max := errs[len(errs)/2], errs[len(errs)-1]
			t.Logf("%s: canary minus Maildir delivery time over %d samples: min %s, p50 %s, max %s (poll %s)",
				name, n, errs[0].Round(100*time.Microsecond), p50.Round(100*time.Microsecond), max.Round(100*time.Microsecond), poll)
			require.GreaterOrEqual(t, errs[0], -5*time.Millisecond, "the canary cannot see mail before it is delivered")
			// A canary that only searched was late by 0.4-4.4 s in a
			// repeating cycle: every sample at least 400 ms. The bounds
			// leave a busy 2-core machine room for scheduling (Postfix,
			// Dovecot and the probe compete for the CPU) and still fail
			// that: the typical error stays under its floor, the worst
			// under half its ceiling.
			require.Less(t, p50, poll+300*time.Millisecond, "typical error at or above poll + 300 ms")
			require.Less(t, max, 2*time.Second)

			left := func() int {
				n := 0
				for _, id := range inboxIDs(t, stack) {
					if strings.HasPrefix(id, runID+"-sli-") {
						n++
					}
				}
				return n
			}
			if keep {
				require.Equal(t, n, left(), "kept canaries stay in the mailbox")
			} else {
				// The poller deletes a canary right after handing its time
				// to the sample.
				require.Eventually(t, func() bool { return left() == 0 }, waitFor, 10*time.Millisecond,
					"seen canaries are expunged")
			}
		})
	}
}

// TestProbesOnARealStack runs the sender's-side and log-in probes against
// Debian's Postfix (with clamav-milter and clamd) and Dovecot.
func TestProbesOnARealStack(t *testing.T) {
	t.Parallel()
	stack := realstack.Start(t, realstack.Options{Profile: realstack.ProfileIncident})
	target := realTarget(stack)

	t.Run("smtp-transaction", func(t *testing.T) {
		p := newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{})
		smp := measure(p, 30*time.Second)
		require.False(t, smp.Failed, smp.Err)
		require.Equal(t, probes.Class2xx, smp.Class)
		// Postfix answers after the milter has had clamd scan the message.
		require.Positive(t, smp.Value)
		require.Less(t, smp.Value, 10.0)

		// An address Postfix does not know: 550 at RCPT TO.
		p = newProbe(t, probes.SMTPTransactionKind(), target, faults.Params{"to": "nobody@realstack.test", "measure": "success"})
		smp = measure(p, 30*time.Second)
		require.False(t, smp.Failed, "measure success reports refusals as values")
		require.Zero(t, smp.Value)
		require.Equal(t, probes.Class5xx, smp.Class)
		require.Contains(t, smp.Err, "RCPT TO: 550")
	})
	t.Run("imap-login by a short name", func(t *testing.T) {
		// The target's first user is tester@realstack.test, who logs in to
		// Dovecot as tester.
		p := newProbe(t, probes.IMAPLoginKind(), target, faults.Params{})
		smp := measure(p, 30*time.Second)
		require.False(t, smp.Failed, smp.Err)

		p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"password": "wrong", "measure": "success"})
		smp = measure(p, 30*time.Second)
		require.Zero(t, smp.Value)
		require.Contains(t, smp.Err, "AUTHENTICATIONFAILED")
	})
	t.Run("banner and tcp", func(t *testing.T) {
		p := newProbe(t, probes.BannerKind(), target, faults.Params{"endpoint": "smtp", "expect": "220"})
		smp := measure(p, 10*time.Second)
		require.False(t, smp.Failed, smp.Err)
		p = newProbe(t, probes.BannerKind(), target, faults.Params{"endpoint": "imap", "expect": "* OK"})
		smp = measure(p, 10*time.Second)
		require.False(t, smp.Failed, smp.Err)
		p = newProbe(t, probes.TCPKind(), target, faults.Params{"endpoint": "imap"})
		smp = measure(p, 10*time.Second)
		require.False(t, smp.Failed, smp.Err)
	})
}

// inboxIDs lists the X-Mailchaos-Id of every message in tester's Maildir.
func inboxIDs(t *testing.T, s *realstack.Stack) []string {
	t.Helper()
	var ids []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(s.Maildir("tester"), sub))
		require.NoError(t, err)
		for _, e := range entries {
			if id := mailchaosID(filepath.Join(s.Maildir("tester"), sub, e.Name())); id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}
