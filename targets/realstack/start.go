package realstack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startTimeout bounds bringing a stack up, applying a profile and taking it
// down in [Start], [Stack.Apply] and their cleanup.
const startTimeout = 3 * time.Minute

// Start brings a stack up in a fresh folder for the test and takes it down
// when the test ends (the folder is removed unless the test failed; then its
// path and the end of each log are logged). The stack also goes down if the
// test process dies. When the stack cannot run here ([Available]) the test
// is skipped with the reason, except with CI=true, where it fails.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("realstack: %v (CI=true: these tests must not be skipped)", err)
		}
		t.Skipf("realstack: %v", err)
	}
	dir, err := os.MkdirTemp("", "realstack-")
	if err != nil {
		t.Fatalf("realstack: %v", err)
	}
	// The daemons' unprivileged users must traverse it (MkdirTemp is 0700).
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("realstack: %v", err)
	}
	// Registered before Up: a stack half started by an interrupted Up goes
	// down too.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		s := &Stack{Dir: dir}
		if _, err := os.Stat(s.script()); err == nil {
			if _, err := s.Down(ctx); err != nil {
				t.Errorf("realstack: %v", err)
			}
		}
		if t.Failed() {
			logTails(t, dir)
			t.Logf("realstack: the stack's folder is kept: %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("realstack: remove %s: %v", dir, err)
		}
	})
	opts.Watch = os.Getpid()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := Up(ctx, dir, opts)
	if err != nil {
		t.Fatalf("realstack: %v", err)
	}
	return s
}

// Apply switches the running stack to profile (see [Stack.ApplyProfile]),
// failing the test if it cannot.
func (s *Stack) Apply(t testing.TB, profile string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.ApplyProfile(ctx, profile); err != nil {
		t.Fatalf("realstack: %v", err)
	}
}

// logTails logs the last lines of each of the stack's logs.
func logTails(t testing.TB, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "log", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		t.Logf("realstack: last lines of %s:\n%s", f, bytes.Join(lines, []byte("\n")))
	}
}
