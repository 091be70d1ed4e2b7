package experiments_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/faults"
)

// recorder is an injector that records what it is asked to do.
type recorder struct {
	mu        sync.Mutex
	in        map[string]bool // handle IDs in place
	removeErr error           // what Remove fails with
	panics    bool            // Remove panics
}

var _ faults.Injector = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{in: map[string]bool{}} }

func (f *recorder) Describe(context.Context) (faults.Spec, error) {
	return faults.Spec{Name: "recorder"}, nil
}

func (f *recorder) Validate(context.Context, faults.Request) error { return nil }

func (f *recorder) Inject(_ context.Context, req faults.Request) (faults.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in[req.ID] = true
	return faults.Handle{ID: req.ID, Fault: req.Fault}, nil
}

func (f *recorder) Remove(_ context.Context, h faults.Handle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		panic("remove bug")
	}
	if f.removeErr != nil {
		return f.removeErr
	}
	delete(f.in, h.ID)
	return nil
}

func (f *recorder) Status(context.Context, faults.Handle) (faults.Status, error) {
	return faults.Status{Detail: "3 messages sent"}, nil
}

func (f *recorder) inPlace() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.in)
}

// mortal is a recorder whose plugin can die.
type mortal struct {
	*recorder
	lost chan struct{}
}

func (m *mortal) Lost() <-chan struct{} { return m.lost }
func (m *mortal) LostErr() error {
	select {
	case <-m.lost:
		return errors.New("plugin recorder exited")
	default:
		return nil
	}
}

func request(id string) faults.Request {
	return faults.Request{ID: id, Owner: "test", Fault: "recorder", Duration: time.Hour, TTL: time.Hour}
}

func ids(ps []experiments.Placed) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Handle.ID)
	}
	return out
}

func TestLifecycleRemovesWhatIsInPlace(t *testing.T) {
	ctx := context.Background()
	inj := newRecorder()
	var mu sync.Mutex
	var removals []experiments.Removal
	lc := experiments.NewLifecycle(time.Second, func(rm experiments.Removal) {
		mu.Lock()
		defer mu.Unlock()
		removals = append(removals, rm)
	})
	for _, id := range []string{"s1", "s0", "s2"} {
		_, err := lc.Inject(ctx, inj, request(id), 7)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"s0", "s1", "s2"}, ids(lc.InPlace()))

	require.NoError(t, lc.Remove(ctx, "s1", "gone"))
	require.Equal(t, []string{"s0", "s2"}, ids(lc.InPlace()))
	require.Len(t, removals, 1)
	require.Equal(t, "s1", removals[0].Handle.ID)
	require.Equal(t, 7, removals[0].Step)
	require.Equal(t, "3 messages sent", removals[0].Detail)
	require.NoError(t, removals[0].Err)

	require.NoError(t, lc.Rollback(ctx))
	require.Empty(t, lc.InPlace())
	require.Zero(t, inj.inPlace())
	require.Len(t, removals, 3)
}

func TestLifecycleFailedRemovalStaysInPlace(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		spoil func(*recorder)
		want  string
	}{
		{"error", func(r *recorder) { r.removeErr = errors.New("toxiproxy is down") }, "toxiproxy is down"},
		{"panic", func(r *recorder) { r.panics = true }, "remove panicked: remove bug"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inj := newRecorder()
			lc := experiments.NewLifecycle(time.Second, nil)
			_, err := lc.Inject(ctx, inj, request("s0"), 0)
			require.NoError(t, err)
			tt.spoil(inj)
			err = lc.Rollback(ctx)
			var rb *faults.RollbackError
			require.ErrorAs(t, err, &rb)
			require.Equal(t, "s0", rb.Handle.ID)
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, []string{"s0"}, ids(lc.InPlace()), "a fault that may still be in place is kept for another try")
		})
	}
}

func TestRollbackAfterKillTriesBriefly(t *testing.T) {
	kill, cancel := context.WithCancel(context.Background())
	cancel()
	inj := newRecorder()
	lc := experiments.NewLifecycle(time.Minute, nil)
	_, err := lc.Inject(context.Background(), inj, request("s0"), 0)
	require.NoError(t, err)
	require.NoError(t, lc.Rollback(kill), "a removal that is quick still happens after a second signal")
	require.Zero(t, inj.inPlace())
}

func TestHold(t *testing.T) {
	for _, tt := range []struct {
		name string
		// during runs once the fault is in place.
		during   func(cancel context.CancelFunc, m *mortal)
		duration time.Duration
		want     string // the error; "" for none
		lost     bool
	}{
		{name: "time up", during: func(context.CancelFunc, *mortal) {}, duration: 10 * time.Millisecond},
		{name: "signal", during: func(cancel context.CancelFunc, _ *mortal) { cancel() }, duration: time.Hour,
			want: "interrupted; every fault was removed"},
		{name: "plugin lost", during: func(_ context.CancelFunc, m *mortal) { close(m.lost) }, duration: time.Hour,
			want: "plugin recorder exited", lost: true},
		{name: "removal failed", during: func(_ context.CancelFunc, m *mortal) { m.removeErr = errors.New("refused") },
			duration: 10 * time.Millisecond, want: "may still be in place"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := &mortal{recorder: newRecorder(), lost: make(chan struct{})}
			req := request("inject-1")
			req.Duration = tt.duration
			var injected faults.Handle
			var lost error
			removed := ""
			err := experiments.Hold(ctx, m, req, experiments.HoldOptions{RemoveTimeout: time.Second,
				Injected: func(h faults.Handle) {
					injected = h
					m.mu.Lock()
					tt.during(cancel, m)
					m.mu.Unlock()
				},
				Lost:    func(err error) { lost = err },
				Removed: func(detail string) { removed = detail },
			})
			require.Equal(t, "inject-1", injected.ID)
			require.Equal(t, tt.lost, lost != nil, "lost: %v", lost)
			if tt.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tt.want)
			}
			if tt.name == "removal failed" {
				var rb *faults.RollbackError
				require.ErrorAs(t, err, &rb)
				require.Empty(t, removed)
				return
			}
			require.Equal(t, "3 messages sent", removed)
			require.Zero(t, m.inPlace(), "the fault was left in place")
		})
	}
}
