package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// serveMailstack runs `target serve mailstack` with args and returns its
// endpoints, its stderr, its signal channel and its exit code channel.
func serveMailstack(t *testing.T, args ...string) (map[string]string, *syncBuffer, chan os.Signal, <-chan int) {
	t.Helper()
	var out syncBuffer
	errb := &syncBuffer{}
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: errb, Signals: sigs}, append([]string{"--log-level", "warn", "target", "serve", "mailstack",
		"--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}, args...)...)
	return endpoints(t, &out, "smtp", "imap", "metrics"), errb, sigs, done
}

// sendPlain sends one message from alice to bob over plain SMTP.
func sendPlain(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(msg)))
	require.NoError(t, c.Quit())
}

func TestServeMailstackSpoolsQueuedMailAndResumesIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	slow := filepath.Join(dir, "slow.yaml")
	require.NoError(t, os.WriteFile(slow, []byte("profile: incident\nscan: {workers: 1}\nengines:\n  - delay: 1m\n"), 0o600))

	eps, errb, sigs, done := serveMailstack(t, "--config", slow, "--spool", spool)
	sendPlain(t, eps["smtp"], "Subject: kept\r\n\r\nhello\r\n")
	// The first signal waits for the queue; the second gives up on the
	// slow scan, and the message goes to the spool.
	sigs <- syscall.SIGTERM
	sigs <- syscall.SIGTERM
	waitExit(t, done)
	require.Contains(t, errb.String(), "mailstack spooled 1 acknowledged messages to "+spool+"/")

	_, errb, sigs, done = serveMailstack(t, "--spool", spool)
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "resumed 1 spooled messages") },
		waitFor, 5*time.Millisecond, errb.String())
	sigs <- syscall.SIGTERM
	require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
	require.Contains(t, errb.String(), "mailstack stopped: 1 accepted, 1 delivered, 0 quarantined, 0 bounced, 0 still queued")
}

func TestServeMailstackWithoutSpoolSaysWhatIsLost(t *testing.T) {
	t.Parallel()
	slow := filepath.Join(t.TempDir(), "slow.yaml")
	require.NoError(t, os.WriteFile(slow, []byte("profile: incident\nscan: {workers: 1}\nengines:\n  - delay: 1m\n"), 0o600))
	eps, errb, sigs, done := serveMailstack(t, "--config", slow)
	sendPlain(t, eps["smtp"], "Subject: lost\r\n\r\nhello\r\n")
	sigs <- syscall.SIGTERM
	sigs <- syscall.SIGTERM
	waitExit(t, done)
	require.Contains(t, errb.String(), "1 acknowledged messages were not delivered and are lost: no spool directory is configured")
}

func TestServeMailstackRefusesAnUnsafeSpool(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.Mkdir(spool, 0o700))
	require.NoError(t, os.Chmod(spool, 0o777))
	code, _, stderr := run(t, "target", "serve", "mailstack", "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--spool", spool)
	require.NotEqual(t, cli.ExitOK, code)
	require.Contains(t, stderr, "writable by group or others")
}
