package loadsurge_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
)

func request(id, addr string, params faults.Params) faults.Request {
	return faults.Request{
		ID: id, Owner: "test", Fault: loadsurge.Name, TTL: time.Minute, Params: params,
		Target: faults.Target{Endpoints: map[string]string{"smtp": addr, "imap": "127.0.0.1:1"}, Users: []faults.User{{Address: "bob@example.test"}}},
	}
}

// paramErrors returns the parameters named by err's *faults.ParamError
// values.
func paramErrors(err error) []string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var names []string
	for _, e := range errs {
		var pe *faults.ParamError
		if errors.As(e, &pe) {
			names = append(names, pe.Param)
		}
	}
	sort.Strings(names)
	return names
}

func TestInjectorDescribe(t *testing.T) {
	t.Parallel()
	spec, err := loadsurge.New().Describe(context.Background())
	require.NoError(t, err)
	require.Equal(t, "load-surge", spec.Name)
	require.False(t, spec.NeedsLink)
	for _, name := range []string{"protocol", "rate", "schedule", "rate-to", "steps", "spike-rate", "spike-at", "spike-for", "concurrency",
		"per-session", "size", "infected", "from", "to", "users", "password", "mailbox", "fetch", "endpoint", "timeout"} {
		p, ok := spec.Param(name)
		require.True(t, ok, name)
		require.NotEmpty(t, p.Doc, name)
	}
	// Every default passes the schema's own checks.
	_, errs := faults.Check(spec, faults.Params{})
	require.Empty(t, errs)
}

func TestInjectorValidate(t *testing.T) {
	t.Parallel()
	inj := loadsurge.New()
	ctx := context.Background()
	for _, tc := range []struct {
		params faults.Params
		want   []string
		msg    string
	}{
		{faults.Params{}, nil, ""},
		{faults.Params{"rate": "0", "concurrency": "50"}, nil, ""},
		{faults.Params{"schedule": "ramp", "rate": "10", "rate-to": "500/s"}, nil, ""},
		{faults.Params{"schedule": "step", "steps": "100@0s,300@10s,50@20s"}, nil, ""},
		{faults.Params{"schedule": "spike", "spike-rate": "1000", "spike-at": "5s", "spike-for": "2s"}, nil, ""},
		{faults.Params{"size": "1KB-64KB", "infected": "30%", "to": "a@example.test, b@example.test"}, nil, ""},
		{faults.Params{"rat": "100"}, []string{"rat"}, `did you mean "rate"?`},
		{faults.Params{"rate": "fast"}, []string{"rate"}, "not a rate"},
		{faults.Params{"rate": "-5"}, []string{"rate"}, "not a rate"},
		{faults.Params{"schedule": "ramp"}, []string{"rate-to"}, "required with schedule ramp"},
		{faults.Params{"schedule": "rampe"}, []string{"schedule"}, `did you mean "ramp"?`},
		{faults.Params{"rate-to": "10"}, []string{"rate-to"}, "only applies to schedule ramp"},
		{faults.Params{"schedule": "step"}, []string{"steps"}, "required"},
		{faults.Params{"schedule": "step", "steps": "100@0s,50"}, []string{"steps"}, "RATE@OFFSET"},
		{faults.Params{"schedule": "spike", "spike-rate": "10"}, []string{"spike-at", "spike-for"}, "required with schedule spike"},
		{faults.Params{"size": "4XB"}, []string{"size"}, "not a size"},
		{faults.Params{"size": "64KB-1KB"}, []string{"size"}, "reversed"},
		{faults.Params{"concurrency": "0"}, []string{"concurrency"}, "below the minimum"},
		{faults.Params{"infected": "2"}, []string{"infected"}, "not between 0 and 1"},
		{faults.Params{"to": "bob"}, []string{"to"}, "not an address"},
		{faults.Params{"from": "x@y>"}, []string{"from"}, "not an address"},
		{faults.Params{"endpoint": "smpt"}, []string{"endpoint"}, `did you mean "smtp"?`},
		{faults.Params{"rate": "x", "size": "y"}, []string{"rate", "size"}, ""},
		{faults.Params{"protocol": "imap"}, nil, ""},
		{faults.Params{"protocol": "imap", "users": "a@example.test, b", "password": "s3cret", "mailbox": "Archive", "fetch": "20",
			"schedule": "ramp", "rate-to": "500/s", "concurrency": "100"}, nil, ""},
		{faults.Params{"protocol": "imap", "endpoint": "smtp"}, nil, ""},
		{faults.Params{"protocol": "impa"}, []string{"protocol"}, `did you mean "imap"?`},
		{faults.Params{"users": "a@example.test"}, []string{"users"}, "only applies to protocol imap"},
		{faults.Params{"password": "x", "fetch": "3"}, []string{"fetch", "password"}, "only applies to protocol imap"},
		{faults.Params{"protocol": "imap", "to": "a@example.test", "size": "1KB"}, []string{"size", "to"}, "only applies to protocol smtp"},
		{faults.Params{"protocol": "imap", "users": "a@example.test,,b"}, []string{"users"}, "not a log-in name"},
		{faults.Params{"protocol": "imap", "users": "a b"}, []string{"users"}, "not a log-in name"},
		{faults.Params{"protocol": "imap", "password": ""}, []string{"password"}, "must not be empty"},
		{faults.Params{"protocol": "imap", "mailbox": " "}, []string{"mailbox"}, "must not be empty"},
		{faults.Params{"protocol": "imap", "fetch": "0"}, []string{"fetch"}, "below the minimum"},
		{faults.Params{"protocol": "imap", "endpoint": "imap2"}, []string{"endpoint"}, `did you mean "imap"?`},
		{faults.Params{"protocol": "imap", "schedule": "ramp"}, []string{"rate-to"}, "required with schedule ramp"},
	} {
		t.Run(fmt.Sprint(tc.params), func(t *testing.T) {
			err := inj.Validate(ctx, request("v1", "127.0.0.1:25", tc.params))
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, tc.want, paramErrors(err), err.Error())
			require.Contains(t, err.Error(), tc.msg)
			require.Contains(t, err.Error(), "load-surge: parameter "+tc.want[0])
		})
	}
	req := request("v1", "127.0.0.1:25", nil)
	req.TTL = 0
	require.Error(t, inj.Validate(ctx, req), "a request needs a TTL")
	req = request("bad id", "127.0.0.1:25", nil)
	require.Error(t, inj.Validate(ctx, req), "the ID goes into headers")
}

func TestInjectStatusRemove(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	inj := loadsurge.New()
	ctx := context.Background()
	h, err := inj.Inject(ctx, request("surge-1", s.Addr, faults.Params{"rate": "200/s", "concurrency": "4"}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	require.Equal(t, "surge-1", h.ID)
	require.Equal(t, loadsurge.Name, h.Fault)
	require.Equal(t, "test", h.Owner)
	require.Equal(t, time.Minute, h.Expires.Sub(h.Injected))

	_, err = inj.Inject(ctx, request("surge-1", s.Addr, nil))
	require.Error(t, err, "the ID is in use")

	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	require.True(t, s.WaitCount(wctx, 20))
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Active)
	require.Positive(t, st.Figures["accepted"])
	for _, k := range []string{"sent", "accepted", "tempfail", "rejected", "conn_error", "timeout", "unsent", "rate", "p50_ms", "p99_ms", "lag_p99_ms"} {
		require.Contains(t, st.Figures, k)
	}
	require.Contains(t, st.Detail, "load-surge test-surge-1 (open loop, running)", "the run ID is the owner's and the request's")

	require.NoError(t, inj.Remove(ctx, h))
	st, err = inj.Status(ctx, h)
	require.NoError(t, err)
	require.False(t, st.Active)
	require.Equal(t, float64(s.Count()), st.Figures["accepted"])
	require.NoError(t, inj.Remove(ctx, h), "Remove is idempotent")

	ids := inj.Accepted(h)
	require.Len(t, ids, int(s.Count()))
	for id := range s.IDs() {
		require.Contains(t, ids, id)
	}
	for _, m := range s.Messages() {
		require.True(t, strings.HasPrefix(m.ID, "test-surge-1-"), m.ID)
	}

	// The ID can be used again once the run is over.
	h2, err := inj.Inject(ctx, request("surge-1", s.Addr, faults.Params{"rate": "10"}))
	require.NoError(t, err)
	require.NoError(t, inj.Remove(ctx, h2))
	require.True(t, inj.Forget(h))
	require.Nil(t, inj.Accepted(h))
}

func TestRemoveAndStatusOfUnknownHandle(t *testing.T) {
	t.Parallel()
	inj := loadsurge.New()
	h := faults.Handle{ID: "never", Fault: loadsurge.Name}
	require.NoError(t, inj.Remove(context.Background(), h))
	st, err := inj.Status(context.Background(), h)
	require.NoError(t, err)
	require.False(t, st.Active)
	require.False(t, inj.Forget(h))
}

func TestInjectEndsByItselfAtTTL(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	inj := loadsurge.New()
	ctx := context.Background()
	req := request("ttl", s.Addr, faults.Params{"rate": "100"})
	req.TTL = time.Second
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	st := waitInactive(t, inj, h)
	// It schedules load until a grace period (a quarter of the TTL here)
	// before the TTL.
	require.GreaterOrEqual(t, time.Since(h.Injected), 750*time.Millisecond)
	require.Positive(t, st.Figures["accepted"])
}

func TestInjectSchedulesOverThePlannedDuration(t *testing.T) {
	t.Parallel()
	// A ramp reaches rate-to, and a step list plays out, at the end of the
	// planned duration, not of the TTL (which adds a grace for a dead
	// injector): the run then ends by itself with exactly what the
	// schedule makes due in the planned second.
	for _, tc := range []struct {
		name   string
		params faults.Params
		want   float64
	}{
		// 0 → 200/s over 1 s: 100 messages.
		{"ramp", faults.Params{"schedule": "ramp", "rate": "0", "rate-to": "200/s"}, 100},
		// 50/s for 0.5 s, then 150/s for 0.5 s: 25 + 75.
		{"step", faults.Params{"schedule": "step", "steps": "50@0s,150@500ms"}, 100},
		{"imap ramp", faults.Params{"protocol": "imap", "schedule": "ramp", "rate": "0", "rate-to": "200/s"}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sinktest.Start(t, sinktest.Options{})
			inj := loadsurge.New()
			ctx := context.Background()
			req := request("planned", s.Addr, tc.params)
			if tc.params["protocol"] == "imap" {
				req.Target.Endpoints["imap"] = startMem(t, memOpts{}).addr
			}
			req.Duration, req.TTL = time.Second, time.Second+faults.DefaultTTLGrace
			h, err := inj.Inject(ctx, req)
			require.NoError(t, err)
			t.Cleanup(func() { _ = inj.Remove(ctx, h) })
			st := waitInactive(t, inj, h) // after the planned duration and a grace
			require.Equal(t, tc.want, st.Figures["scheduled"], st.Detail)
			require.Zero(t, st.Figures["unsent"], st.Detail)
		})
	}
}

func TestInjectWithoutPlannedDurationRampsOverTheTTL(t *testing.T) {
	t.Parallel()
	// With no planned duration (until removed), the TTL less a grace is
	// the run: a 2 s TTL leaves 1.5 s for a 0 → 200/s ramp, 150 messages.
	s := sinktest.Start(t, sinktest.Options{})
	inj := loadsurge.New()
	ctx := context.Background()
	req := request("unplanned", s.Addr, faults.Params{"schedule": "ramp", "rate": "0", "rate-to": "200/s"})
	req.TTL = 2 * time.Second
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	st := waitInactive(t, inj, h)
	require.Equal(t, 150.0, st.Figures["scheduled"], st.Detail)
}

func TestRemoveAbortsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"smtp", "imap"} {
		t.Run(protocol, func(t *testing.T) {
			addr := silentServer(t)
			inj := loadsurge.New()
			req := request("stuck", addr, faults.Params{"protocol": protocol, "rate": "100", "timeout": "1h"})
			req.Target.Endpoints["imap"] = addr
			h, err := inj.Inject(context.Background(), req)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				st, _ := inj.Status(context.Background(), h)
				return st.Figures["in_flight"] > 0
			}, waitFor, time.Millisecond, "a transaction or session starts")
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			require.NoError(t, inj.Remove(ctx, h))
			st, err := inj.Status(context.Background(), h)
			require.NoError(t, err)
			require.False(t, st.Active)
			require.Positive(t, st.Figures["cut"], st.Detail)
			require.Zero(t, st.Figures["timeout"], st.Detail)
			if protocol == "imap" {
				require.Equal(t, st.Figures["cut"], st.Figures["failed"], st.Detail)
			}
		})
	}
}

func TestInjectorConcurrentUse(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	inj := loadsurge.New()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := inj.Inject(ctx, request(fmt.Sprintf("c%d", i), s.Addr, faults.Params{"rate": "50", "concurrency": "2"}))
			if err != nil {
				errs <- err
				return
			}
			if _, err := inj.Status(ctx, h); err != nil {
				errs <- err
			}
			_ = inj.Accepted(h)
			if err := inj.Remove(ctx, h); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// TestRemoveAtThePlannedEndOffersTheWholeSchedule: a runner removes a step
// at the end it planned, a moment before the load, started a moment after
// that plan, reaches its own: the last messages due are still offered.
func TestRemoveAtThePlannedEndOffersTheWholeSchedule(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	inj := loadsurge.New()
	ctx := context.Background()
	req := request("planned-end", s.Addr, faults.Params{"rate": "100/s", "concurrency": "4"})
	req.Duration = time.Second
	planned := time.Now().Add(req.Duration)
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	// The runner's clock: a little before the load's own end.
	time.Sleep(time.Until(planned.Add(-100 * time.Millisecond)))
	require.NoError(t, inj.Remove(ctx, h))
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.Equal(t, 100.0, st.Figures["scheduled"], st.Detail)
	require.Zero(t, st.Figures["unsent"], st.Detail)
}
