package mailstack_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// lockedBuffer is a bytes.Buffer for a logger and a test to share.
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

// TestStartWarnsOfSilentExternalEngine: an external engine nothing answers
// at is named once, at WARN, when the stack starts; one that answers (a
// real clamd-protocol server) is not.
func TestStartWarnsOfSilentExternalEngine(t *testing.T) {
	t.Parallel()
	// A free port nobody listens on any more.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	silent := gone.Addr().String()
	require.NoError(t, gone.Close())
	// An engine that answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &clamd.Server{}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	cfg := testConfig(t, mailstack.ProfileRemediated)
	cfg.Engines = append(cfg.Engines[:1],
		mailstack.EngineConfig{Name: "real-clamd", External: true, Dial: silent},
		mailstack.EngineConfig{Name: "answering", External: true, Dial: ln.Addr().String()})
	var logs lockedBuffer
	startStackWith(t, cfg, mailstack.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	want := "engine real-clamd at " + silent + " does not answer: every message scanned by it will be deferred until it does"
	var warns []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			warns = append(warns, line)
		}
	}
	require.Len(t, warns, 1, logs.String())
	require.Contains(t, warns[0], want)
	require.NotContains(t, logs.String(), "engine answering")
}
