package mailstack_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// spoolConfig is a stack whose every scan waits delay (one worker, the
// incident profile's long scan timeout), so mail stays queued, with the
// given spool directory.
func spoolConfig(t testing.TB, spool string, delay time.Duration) mailstack.Config {
	t.Helper()
	cfg := testConfig(t, mailstack.ProfileIncident)
	cfg.Scan.Workers = 1
	cfg.Engines[0].Delay = delay
	cfg.Spool = spool
	return cfg
}

// spoolFiles lists the files in dir.
func spoolDirFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// delivered returns the Message-IDs of the delivered messages in the ledger.
func delivered(s *mailstack.Stack) map[string]int {
	out := map[string]int{}
	for _, r := range s.Messages() {
		if r.State == mailstack.StateDelivered {
			out[r.MessageID]++
		}
	}
	return out
}

func TestShutdownSpoolsQueuedMailAndARestartDeliversItOnce(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s1 := startStack(t, spoolConfig(t, dir, 10*time.Second))
	const n = 20
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, sendMail(t, s1.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"},
			fmt.Sprintf("spool %d", i), "hello"))
	}
	// The deadline ends before the first (10 s) scan: nothing is delivered.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s1.Shutdown(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	first := delivered(s1)
	st := s1.Spool()
	require.Equal(t, n-len(first), st.Spooled, "every undelivered acknowledged message is spooled")
	require.Zero(t, st.Unspooled)
	require.Equal(t, dir, filepath.Dir(st.File))
	fi, err := os.Stat(st.File)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Len(t, spoolDirFiles(t, dir), 1)

	// A restart on the same spool with fast engines delivers the rest.
	cfg := spoolConfig(t, dir, 0)
	cfg.Scan.Workers = 4
	s2 := startStack(t, cfg)
	require.Equal(t, st.Spooled, s2.Spool().Resumed)
	require.Empty(t, spoolDirFiles(t, dir), "the resumed spool file is removed")
	var rest []string
	for _, id := range ids {
		if first[id] == 0 {
			rest = append(rest, id)
		}
	}
	for _, r := range waitFinal(t, s2, rest...) {
		require.Equal(t, mailstack.StateDelivered, r.State)
	}
	second := delivered(s2)
	bob := imapLogin(t, s2.Endpoint("imap"), "bob@example.test")
	for _, id := range ids {
		require.Equal(t, 1, first[id]+second[id], "message %s delivered %d+%d times", id, first[id], second[id])
		if second[id] == 1 {
			require.Len(t, searchMessageID(t, bob, id), 1, "message %s in bob's INBOX once", id)
		}
	}
	require.Equal(t, n, s1.Counts().Accepted)
	require.Equal(t, st.Spooled, s2.Counts().Accepted)

	// Stopping with an empty queue writes no spool file.
	sctx, scancel := context.WithTimeout(context.Background(), waitFor)
	defer scancel()
	require.NoError(t, s2.Shutdown(sctx))
	require.Zero(t, s2.Spool().Spooled)
	require.Empty(t, spoolDirFiles(t, dir))
}

func TestShutdownLetsTheQueueFinish(t *testing.T) {
	t.Parallel()
	s := startStack(t, spoolConfig(t, "", 50*time.Millisecond))
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"},
			fmt.Sprintf("drain %d", i), "hello"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	for _, id := range ids {
		r := s.MessagesByID(id)
		require.Len(t, r, 1)
		require.Equal(t, mailstack.StateDelivered, r[0].State, "message %s", id)
	}
	require.Zero(t, s.Spool().Unspooled)
}

func TestShutdownWithoutSpoolCountsWhatIsLost(t *testing.T) {
	t.Parallel()
	s := startStack(t, spoolConfig(t, "", 10*time.Second))
	for i := 0; i < 3; i++ {
		sendMail(t, s.Endpoint("smtp"), "alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("lost %d", i), "x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	st := s.Spool()
	require.Equal(t, 3, st.Unspooled)
	require.Zero(t, st.Spooled)
	require.Empty(t, st.Dir)
}

func TestUnsafeOrCorruptSpoolIsRefused(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T, dir string) error {
		t.Helper()
		s, err := mailstack.New(spoolConfig(t, dir, 0), mailstack.Options{})
		require.NoError(t, err)
		err = s.Start(context.Background())
		_ = s.Close()
		return err
	}
	t.Run("symlink", func(t *testing.T) {
		base := t.TempDir()
		real := filepath.Join(base, "real")
		require.NoError(t, os.Mkdir(real, 0o700))
		link := filepath.Join(base, "link")
		require.NoError(t, os.Symlink(real, link))
		err := start(t, link)
		require.ErrorContains(t, err, "is a symlink")
	})
	t.Run("world-writable", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spool")
		require.NoError(t, os.Mkdir(dir, 0o700))
		require.NoError(t, os.Chmod(dir, 0o777))
		require.ErrorContains(t, start(t, dir), "writable by group or others")
	})
	for name, content := range map[string]string{
		"garbage":     "not json\n",
		"no-header":   `{"end":0}` + "\n",
		"truncated":   `{"mailchaos_spool":1}` + "\n",
		"wrong-count": `{"mailchaos_spool":1}` + "\n" + `{"end":3}` + "\n",
		"oversized":   `{"mailchaos_spool":1}` + "\n" + `{"record":{"queue_id":"` + strings.Repeat("A", 20<<20) + `"}}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "mailstack-x.spool"), []byte(content), 0o600))
			err := start(t, dir)
			require.ErrorContains(t, err, "refusing the spool")
			require.Len(t, spoolDirFiles(t, dir), 1, "a refused spool is left alone")
		})
	}
}

// greet dials addr and returns the connection and its first reply line.
func greet(t testing.TB, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return c, strings.TrimRight(line, "\r\n")
}

func TestSMTPConnectionCapAnswers421(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.SMTP.MaxConnections = 2
	s := startStack(t, cfg)
	addr := s.Endpoint("smtp")
	c1, l1 := greet(t, addr)
	_, l2 := greet(t, addr)
	require.True(t, strings.HasPrefix(l1, "220 "), l1)
	require.True(t, strings.HasPrefix(l2, "220 "), l2)

	c3, l3 := greet(t, addr)
	require.Equal(t, "421 4.7.0 too many connections", l3)
	_, err := c3.Read(make([]byte, 1))
	require.Error(t, err, "a refused connection is closed")
	require.Equal(t, 1.0, metricValue(scrape(t, s), mailstack.MetricSMTPRefused))

	// Once a connection ends, its place is free again.
	require.NoError(t, c1.Close())
	require.Eventually(t, func() bool {
		_, l := greet(t, addr)
		return strings.HasPrefix(l, "220 ")
	}, waitFor, 10*time.Millisecond)
}
