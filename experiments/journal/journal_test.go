package journal_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// env is an environment holding only vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func writeOne(t *testing.T, w *journal.Writer) {
	t.Helper()
	require.NoError(t, w.Write(journal.Event{Type: journal.TypeLog, Message: "hello"}))
	require.NoError(t, w.Close())
}

func TestCreateIsNewAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	w, err := journal.Create(path, "run-1")
	require.NoError(t, err)
	writeOne(t, w)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	evs, err := journal.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "run-1", evs[0].Run)
}

func TestCreateRefusesWhatExists(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep me\n"), 0o644))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(victim, link))
	dangling := filepath.Join(dir, "dangling")
	require.NoError(t, os.Symlink(filepath.Join(dir, "target"), dangling))

	for _, p := range []string{victim, link, dangling} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			_, err := journal.Create(p, "")
			require.ErrorIs(t, err, fs.ErrExist)
			b, err := os.ReadFile(victim)
			require.NoError(t, err)
			require.Equal(t, "keep me\n", string(b))
			_, err = os.Lstat(filepath.Join(dir, "target"))
			require.ErrorIs(t, err, fs.ErrNotExist, "created through a dangling link")
		})
	}
}

func TestDefaultDir(t *testing.T) {
	t.Run("XDG_STATE_HOME", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "missing", "state")
		dir, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": state, "HOME": "/nonexistent"}))
		require.NoError(t, err)
		require.Equal(t, filepath.Join(state, "mailchaos"), dir)
		fi, err := os.Lstat(dir)
		require.NoError(t, err)
		require.True(t, fi.IsDir())
		require.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
	})
	t.Run("HOME", func(t *testing.T) {
		home := t.TempDir()
		for _, xdg := range []string{"", "relative/state"} {
			dir, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": xdg, "HOME": home}))
			require.NoError(t, err)
			require.Equal(t, filepath.Join(home, ".local", "state", "mailchaos"), dir)
		}
	})
	t.Run("nowhere", func(t *testing.T) {
		_, err := journal.DefaultDir(env(nil))
		require.ErrorContains(t, err, "no state directory")
	})
	t.Run("symlink", func(t *testing.T) {
		state, elsewhere := t.TempDir(), t.TempDir()
		require.NoError(t, os.Symlink(elsewhere, filepath.Join(state, "mailchaos")))
		_, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": state}))
		require.ErrorContains(t, err, "is a symbolic link")
		_, _, err = journal.CreateIn(filepath.Join(state, "mailchaos"), "")
		require.ErrorContains(t, err, "is a symbolic link")
		left, err := os.ReadDir(elsewhere)
		require.NoError(t, err)
		require.Empty(t, left)
	})
	t.Run("writable by others", func(t *testing.T) {
		for _, mode := range []fs.FileMode{0o777, 0o770, 0o1777} {
			state := t.TempDir()
			dir := filepath.Join(state, "mailchaos")
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.Chmod(dir, mode))
			_, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": state}))
			require.ErrorContains(t, err, "writable by others", "mode %v", mode)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		state := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(state, "mailchaos"), nil, 0o600))
		_, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": state}))
		require.ErrorContains(t, err, "not a directory")
	})
}

func TestCreateIn(t *testing.T) {
	dir, err := journal.DefaultDir(env(map[string]string{"XDG_STATE_HOME": t.TempDir()}))
	require.NoError(t, err)
	seen := map[string]bool{}
	for range 3 {
		w, path, err := journal.CreateIn(dir, "run-1")
		require.NoError(t, err)
		writeOne(t, w)
		require.Equal(t, dir, filepath.Dir(path))
		require.Regexp(t, `^journal-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}\.jsonl$`, filepath.Base(path))
		require.False(t, seen[path], "two journals at %s", path)
		seen[path] = true
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular())
		require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	}
}

func TestAppend(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j.jsonl")
	w, err := journal.Create(path, "run-1")
	require.NoError(t, err)
	writeOne(t, w)
	// A crashed run left half a line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"type":"lo`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	w, err = journal.Append(path, "run-1")
	require.NoError(t, err)
	writeOne(t, w)
	evs, err := journal.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, evs, 2)

	t.Run("symlink", func(t *testing.T) {
		link := filepath.Join(dir, "link.jsonl")
		require.NoError(t, os.Symlink(path, link))
		before, err := os.ReadFile(path)
		require.NoError(t, err)
		_, err = journal.Append(link, "run-1")
		require.ErrorIs(t, err, syscall.ELOOP)
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, before, after)
	})
	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		_, err := journal.Append(fifo, "run-1")
		require.ErrorContains(t, err, "not a regular file")
	})
}

// TestSummaryVersions: a verdict written before summary versions reads as
// version 0 with its figures; a version 2 summary keeps every field.
func TestSummaryVersions(t *testing.T) {
	old := `{"t":"2025-03-04T10:00:44Z","type":"verdict","status":"failed","exit_code":1,"summary":{"slis":[{"name":"d","tolerance":"<= 5s","baseline":0.7,"worst":30,"time_to_recover":-1,"recovered":false,"passed":false,"failures":2}],"time_to_recover":-1,"recovery_bound":60000000000}}` + "\n"
	evs, err := journal.Read(strings.NewReader(old))
	require.NoError(t, err)
	sum := evs[0].Summary
	require.Zero(t, sum.Version)
	require.False(t, sum.RecoveryJudged, "unknown in version 0")
	require.InDelta(t, 0.7, sum.SLIs[0].Baseline, 1e-9)

	var buf bytes.Buffer
	w := journal.NewWriter(&buf, "r")
	in := journal.Summary{Version: journal.SummaryVersion, RecoveryJudged: true, SLIs: []journal.SLISummary{{
		Name: "d", Samples: 9, BaselineJudged: true, BaselineMeasured: true, BaselinePassed: true, BaselineFailed: 1,
		Evaluations: 4, WorstMeasured: true, WorstOut: true, Last: 0.2, LastMeasured: true, LastFailed: true,
		OutFor: 3 * time.Second, Hold: time.Second,
	}}}
	require.NoError(t, w.Write(journal.Event{Type: journal.TypeVerdict, Summary: &in}))
	evs, err = journal.Read(&buf)
	require.NoError(t, err)
	require.Equal(t, in, *evs[0].Summary)
}
