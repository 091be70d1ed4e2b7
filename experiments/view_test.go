package experiments_test

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
)

// lockedBuffer is a bytes.Buffer a view may write to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLineViewWritesTimestampedLinesOnly(t *testing.T) {
	var out lockedBuffer
	v := experiments.NewLineView(&out)
	stop := v.Live(func() string { return "never drawn" })
	v.Line("phase baseline")
	v.Line("phase inject")
	stop()
	require.Regexp(t, regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} phase baseline\n\d\d:\d\d:\d\d\.\d{3} phase inject\n$`), out.String())
}

func TestTerminalViewRedrawsTheStatusLineBelowTheLines(t *testing.T) {
	var out lockedBuffer
	v := experiments.NewTerminalView(&out)
	v.Line("phase baseline")
	require.True(t, strings.HasPrefix(out.String(), "\r\033[K"), "a line first clears the status line: %q", out.String())

	stop := v.Live(func() string { return "[baseline] 1s/10s" })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "\r\033[K[baseline] 1s/10s") },
		5*time.Second, 10*time.Millisecond, "the status line was never drawn: %q", out.String())
	stop()
	require.True(t, strings.HasSuffix(out.String(), "\r\033[K"), "stop leaves the status line cleared: %q", out.String())
	drawn := out.String()
	v.Line("verdict completed")
	require.Regexp(t, regexp.MustCompile(`^\r\033\[K\d\d:\d\d:\d\d\.\d{3} verdict completed\n$`), strings.TrimPrefix(out.String(), drawn))
}
