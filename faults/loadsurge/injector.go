package loadsurge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Name is the fault's name.
const Name = "load-surge"

// Schedule kinds, the values of the schedule parameter.
const (
	ScheduleConstant = "constant"
	ScheduleRamp     = "ramp"
	ScheduleStep     = "step"
	ScheduleSpike    = "spike"
)

// Spec returns the load-surge parameter schema.
func Spec() faults.Spec {
	return faults.Spec{
		Name:    Name,
		Summary: "send open-loop SMTP load (constant, ramp, step or spike arrival rate) to the target until removed",
		Params: []faults.Param{
			{Name: "rate", Type: faults.TypeRate, Unit: "msg/s", Default: "100/s", Min: "0", Max: "1000000",
				Doc: "arrival rate: the constant rate, a ramp's start rate or a spike's base rate; 0 with schedule constant is the closed loop (each session sends back to back)"},
			{Name: "schedule", Type: faults.TypeEnum, Default: ScheduleConstant,
				Enum: []string{ScheduleConstant, ScheduleRamp, ScheduleStep, ScheduleSpike},
				Doc:  "shape of the arrival rate over time"},
			{Name: "rate-to", Type: faults.TypeRate, Unit: "msg/s", Min: "0", Max: "1000000",
				Doc: "ramp: the rate at the end of the run; the rate goes linearly from rate to rate-to over the whole run"},
			{Name: "steps", Type: faults.TypeString,
				Doc: "step: RATE@OFFSET list in increasing offsets, e.g. 100@0s,300@10s,50@20s"},
			{Name: "spike-rate", Type: faults.TypeRate, Unit: "msg/s", Min: "0", Max: "1000000",
				Doc: "spike: the rate during the spike"},
			{Name: "spike-at", Type: faults.TypeDuration, Min: "0s",
				Doc: "spike: when the spike starts, from the start of the run"},
			{Name: "spike-for", Type: faults.TypeDuration, Min: "1ms",
				Doc: "spike: how long the spike lasts"},
			{Name: "concurrency", Type: faults.TypeInt, Unit: "sessions", Default: "20", Min: "1", Max: "10000",
				Doc: "SMTP sessions in flight at most; due messages wait for a free one"},
			{Name: "per-session", Type: faults.TypeInt, Unit: "messages", Default: "10", Min: "1", Max: "1000000",
				Doc: "messages per SMTP session before QUIT and a new connection"},
			{Name: "size", Type: faults.TypeString, Default: "4KB",
				Doc: "message size with headers: fixed (4KB) or uniform range (1KB-64KB), at most 64MiB"},
			{Name: "infected", Type: faults.TypeFraction, Default: "0",
				Doc: "share of messages carrying the EICAR test file as a base64 attachment"},
			{Name: "from", Type: faults.TypeString, Default: DefaultFrom,
				Doc: "envelope and header sender"},
			{Name: "to", Type: faults.TypeString,
				Doc: "comma-separated recipients, one drawn uniformly per message (default: the target's users, else alice@example.test,bob@example.test)"},
			{Name: "endpoint", Type: faults.TypeString, Default: "smtp",
				Doc: "the target endpoint to send to"},
			{Name: "timeout", Type: faults.TypeDuration, Default: "30s", Min: "1ms", Max: "1h",
				Doc: "deadline of the connection and of each exchange: a command, or a pipelined group of commands or the message body, and its replies"},
		},
	}
}

// ParseParams checks load-surge parameters and turns them into a
// generator configuration: every problem is returned, joined, as
// [*faults.ParamError] values. users are the default recipients (the
// target's users); duration is the run's length, over which a ramp goes.
// Addr, Duration, Count and RunID are left for the caller.
func ParseParams(params faults.Params, users []string, duration time.Duration) (Config, error) {
	cfg, errs := parseParams(params, users, duration)
	return cfg, errors.Join(errs...)
}

// parseParams is ParseParams with the errors as a list.
func parseParams(params faults.Params, users []string, duration time.Duration) (Config, []error) {
	spec := Spec()
	vals, errs := faults.Check(spec, params)
	bad := func(param, msg, allowed string) {
		errs = append(errs, &faults.ParamError{Fault: Name, Param: param, Value: params[param], Msg: msg, Allowed: allowed})
	}
	failed := func(param string) bool {
		for _, err := range errs {
			var pe *faults.ParamError
			if errors.As(err, &pe) && pe.Param == param {
				return true
			}
		}
		return false
	}
	need := func(kind string, names ...string) {
		for _, n := range names {
			if _, ok := params[n]; !ok {
				bad(n, "is required with schedule "+kind, "")
			}
		}
	}
	for _, p := range spec.Params {
		kind := scheduleOf(p.Name)
		if _, given := params[p.Name]; given && kind != "" && vals.String("schedule") != kind && !failed("schedule") {
			bad(p.Name, "only applies to schedule "+kind, "")
		}
	}

	cfg := Config{
		Concurrency: vals.Int("concurrency"),
		PerSession:  vals.Int("per-session"),
		Infected:    vals.Float("infected"),
		From:        vals.String("from"),
		Timeout:     vals.Duration("timeout"),
	}
	switch vals.String("schedule") {
	case ScheduleConstant:
		cfg.Schedule = Constant(vals.Rate("rate"))
	case ScheduleRamp:
		need(ScheduleRamp, "rate-to")
		if duration <= 0 {
			bad("schedule", "a ramp needs a run duration to ramp over", "")
		}
		cfg.Schedule = Ramp(vals.Rate("rate"), vals.Rate("rate-to"), duration)
	case ScheduleStep:
		need(ScheduleStep, "steps")
		if s, ok := params["steps"]; ok {
			steps, err := ParseSteps(s)
			if err != nil {
				bad("steps", err.Error(), "RATE@OFFSET list such as 100@0s,300@10s,50@20s")
			}
			cfg.Schedule = Steps(steps)
		}
	case ScheduleSpike:
		need(ScheduleSpike, "spike-rate", "spike-at", "spike-for")
		cfg.Schedule = Spike(vals.Rate("rate"), vals.Rate("spike-rate"), vals.Duration("spike-at"), vals.Duration("spike-for"))
	}
	if !failed("size") {
		size, err := ParseSizeRange(vals.String("size"))
		if err != nil {
			bad("size", err.Error(), "a size such as 4KB or a range such as 1KB-64KB, from 1 byte to 64MiB")
		}
		cfg.Size = size
	}
	if err := CheckAddress(cfg.From); err != nil {
		bad("from", err.Error(), "")
	}
	cfg.Rcpts = users
	if s, ok := params["to"]; ok {
		cfg.Rcpts = nil
		for _, a := range strings.Split(s, ",") {
			cfg.Rcpts = append(cfg.Rcpts, strings.TrimSpace(a))
		}
	}
	for _, a := range cfg.Rcpts {
		if err := CheckAddress(a); err != nil {
			bad("to", err.Error(), "comma-separated addresses")
			break
		}
	}
	return cfg, errs
}

// scheduleOf returns the schedule kind a parameter belongs to, or "".
func scheduleOf(param string) string {
	switch param {
	case "rate-to":
		return ScheduleRamp
	case "steps":
		return ScheduleStep
	case "spike-rate", "spike-at", "spike-for":
		return ScheduleSpike
	}
	return ""
}

// Injector is the load-surge fault: it runs a load generator against the
// target's SMTP endpoint from Inject until Remove or the request's TTL.
// It is safe for concurrent use. It keeps every run it started, finished
// or not, so that Status and Accepted can report on it later; Forget
// drops one.
type Injector struct {
	mu   sync.Mutex
	runs map[string]*surge
}

// surge is one injected load run.
type surge struct {
	run    *Run
	cancel context.CancelFunc // releases the run's TTL context
}

var _ faults.Injector = (*Injector)(nil)

// New returns a load-surge injector.
func New() *Injector { return &Injector{runs: map[string]*surge{}} }

// Describe returns the load-surge spec.
func (i *Injector) Describe(context.Context) (faults.Spec, error) { return Spec(), nil }

// runTimes returns how long a run of an injection with this TTL schedules
// load, and the grace that follows, so that the run is over by the TTL.
func runTimes(ttl time.Duration) (duration, grace time.Duration) {
	grace = min(DefaultGrace, ttl/4)
	return ttl - grace, grace
}

// config checks req and builds the run's configuration.
func (i *Injector) config(req faults.Request) (Config, error) {
	if req.TTL <= 0 {
		return Config{}, fmt.Errorf("%s: request %q has no TTL", Name, req.ID)
	}
	duration, grace := runTimes(req.TTL)
	cfg, errs := parseParams(req.Params, req.Target.Users, duration)
	endpoint := req.Params["endpoint"]
	if endpoint == "" {
		endpoint = "smtp"
	}
	addr, ok := req.Target.Endpoints[endpoint]
	if !ok {
		names := make([]string, 0, len(req.Target.Endpoints))
		for n := range req.Target.Endpoints {
			names = append(names, n)
		}
		sort.Strings(names)
		errs = append(errs, &faults.ParamError{Fault: Name, Param: "endpoint", Value: endpoint,
			Msg: "the target has no such endpoint" + faults.Suggest(endpoint, names), Allowed: "one of " + strings.Join(names, ", ")})
	}
	if err := CheckRunID(req.ID); err != nil {
		errs = append(errs, fmt.Errorf("%s: request ID: %w", Name, err))
	}
	cfg.Addr, cfg.Duration, cfg.Grace, cfg.RunID = addr, duration, grace, req.ID
	return cfg, errors.Join(errs...)
}

// Validate checks the parameters (with the cross-field rules: a ramp needs
// rate-to, a step schedule valid steps, a spike its three parameters) and
// that the target has the endpoint, without touching the target.
func (i *Injector) Validate(_ context.Context, req faults.Request) error {
	_, err := i.config(req)
	return err
}

// Inject starts the load and returns at once. The load runs until Remove
// or until req.TTL has passed: it stops scheduling a short grace before
// the TTL and is over by the TTL. The ID must not be in use by a run that
// is still active.
func (i *Injector) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	cfg, err := i.config(req)
	if err != nil {
		return faults.Handle{}, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if s, ok := i.runs[req.ID]; ok {
		select {
		case <-s.run.Done():
		default:
			return faults.Handle{}, fmt.Errorf("%s: a run with ID %q is already active", Name, req.ID)
		}
	}
	now := time.Now()
	h := faults.Handle{ID: req.ID, Fault: Name, Owner: req.Owner, Injected: now, Expires: now.Add(req.TTL)}
	// The run outlives the Inject call, but never its TTL.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), h.Expires)
	run, err := Start(rctx, cfg)
	if err != nil {
		cancel()
		return faults.Handle{}, fmt.Errorf("%s: start: %w", Name, err)
	}
	if old, ok := i.runs[req.ID]; ok {
		old.cancel()
	}
	i.runs[req.ID] = &surge{run: run, cancel: cancel}
	return h, nil
}

// get returns the run of a handle ID, or nil.
func (i *Injector) get(id string) *surge {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runs[id]
}

// Remove stops the load gracefully and waits for it, aborting in-flight
// transactions if ctx ends first. Removing a finished or unknown run is not
// an error.
func (i *Injector) Remove(ctx context.Context, h faults.Handle) error {
	s := i.get(h.ID)
	if s == nil {
		return nil
	}
	s.run.requestStop()
	select {
	case <-s.run.Done():
	case <-ctx.Done():
		s.cancel() // aborts at once
		<-s.run.Done()
	}
	s.cancel()
	return nil
}

// Status reports whether the load still runs, its figures (sent, accepted,
// tempfail, rejected, conn_error, timeout, unsent, in_flight, backlog, rate
// in msg/s, p50_ms, p99_ms, lag_p99_ms) and its summary as Detail. An unknown handle is
// reported inactive.
func (i *Injector) Status(_ context.Context, h faults.Handle) (faults.Status, error) {
	s := i.get(h.ID)
	if s == nil {
		return faults.Status{Detail: "no such load run in this process"}, nil
	}
	res := s.run.Snapshot()
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return faults.Status{
		Active: !res.Done,
		Figures: map[string]float64{
			"sent":       float64(res.Sent),
			"accepted":   float64(res.Accepted),
			"tempfail":   float64(res.Tempfail),
			"rejected":   float64(res.Rejected),
			"conn_error": float64(res.ConnError),
			"timeout":    float64(res.Timeout),
			"unsent":     float64(res.Unsent),
			"in_flight":  float64(res.InFlight),
			"backlog":    float64(res.Backlog),
			"rate":       res.AchievedRate,
			"p50_ms":     msf(res.Latency.P50),
			"p99_ms":     msf(res.Latency.P99),
			"lag_p99_ms": msf(res.Lag.P99),
		},
		Detail: res.String(),
	}, nil
}

// Accepted returns the X-Mailchaos-Ids the server accepted in the run of
// handle ID id (so far, if it still runs), or nil for an unknown ID.
func (i *Injector) Accepted(id string) []string {
	if s := i.get(id); s != nil {
		return s.run.Accepted()
	}
	return nil
}

// Forget drops the record of a finished run. It returns false, and keeps
// the record, if the run is still active or unknown.
func (i *Injector) Forget(id string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	s, ok := i.runs[id]
	if !ok {
		return false
	}
	select {
	case <-s.run.Done():
		s.cancel()
		delete(i.runs, id)
		return true
	default:
		return false
	}
}
