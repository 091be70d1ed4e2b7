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
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// Name is the fault's name.
const Name = loadfig.FaultName

// Schedule kinds, the values of the schedule parameter.
const (
	ScheduleConstant = "constant"
	ScheduleRamp     = "ramp"
	ScheduleStep     = "step"
	ScheduleSpike    = "spike"
)

// Protocols, the values of the protocol parameter.
const (
	ProtocolSMTP = "smtp"
	ProtocolIMAP = "imap"
)

// Spec returns the load-surge parameter schema.
func Spec() faults.Spec {
	return faults.Spec{
		Name: Name,
		Summary: "send open-loop load to the target until removed: SMTP messages or IMAP log-in sessions " +
			"(constant, ramp, step or spike arrival rate)",
		Params: []faults.Param{
			{Name: "protocol", Type: faults.TypeEnum, Default: ProtocolSMTP, Enum: []string{ProtocolSMTP, ProtocolIMAP},
				Doc: "smtp: messages, each a transaction on a pooled session; imap: log-in sessions, each connect, LOGIN, SELECT, FETCH of the newest envelopes, LOGOUT"},
			{Name: "rate", Type: faults.TypeRate, Unit: "1/s", Default: "100/s", Min: "0", Max: "1000000",
				Doc: "arrival rate in messages or log-ins per second: the constant rate, a ramp's start rate or a spike's base rate; 0 with schedule constant is the closed loop (each session goes back to back)"},
			{Name: "schedule", Type: faults.TypeEnum, Default: ScheduleConstant,
				Enum: []string{ScheduleConstant, ScheduleRamp, ScheduleStep, ScheduleSpike},
				Doc:  "shape of the arrival rate over time"},
			{Name: "rate-to", Type: faults.TypeRate, Unit: "1/s", Min: "0", Max: "1000000",
				Doc: "ramp: the rate at the end of the run; the rate goes linearly from rate to rate-to over the planned duration (else over the run)"},
			{Name: "steps", Type: faults.TypeString,
				Doc: "step: RATE@OFFSET list in increasing offsets, e.g. 100@0s,300@10s,50@20s"},
			{Name: "spike-rate", Type: faults.TypeRate, Unit: "1/s", Min: "0", Max: "1000000",
				Doc: "spike: the rate during the spike"},
			{Name: "spike-at", Type: faults.TypeDuration, Min: "0s",
				Doc: "spike: when the spike starts, from the start of the run"},
			{Name: "spike-for", Type: faults.TypeDuration, Min: "1ms",
				Doc: "spike: how long the spike lasts"},
			{Name: "concurrency", Type: faults.TypeInt, Unit: "sessions", Default: "20", Min: "1", Max: "10000",
				Doc: "sessions in flight at most; due messages or log-ins wait for a free one"},
			{Name: "per-session", Type: faults.TypeInt, Unit: "messages", Default: "10", Min: "1", Max: "1000000",
				Doc: "smtp: messages per SMTP session before QUIT and a new connection"},
			{Name: "size", Type: faults.TypeString, Default: "4KB",
				Doc: "smtp: message size with headers: fixed (4KB) or uniform range (1KB-64KB), at most 64MiB"},
			{Name: "infected", Type: faults.TypeFraction, Default: "0",
				Doc: "smtp: share of messages carrying the EICAR test file as a base64 attachment"},
			{Name: "from", Type: faults.TypeString, Default: DefaultFrom,
				Doc: "smtp: envelope and header sender"},
			{Name: "to", Type: faults.TypeString,
				Doc: "smtp: comma-separated recipients, one drawn uniformly per message (default: the target's users' addresses, else alice@example.test,bob@example.test)"},
			{Name: "users", Type: faults.TypeString,
				Doc: "imap: comma-separated log-in names, taken in turn by successive sessions (default: the target's users' log-in names, else alice@example.test,bob@example.test)"},
			{Name: "password", Type: faults.TypeString, Default: DefaultPassword,
				Doc: "imap: every user's password when given; else each target user's own password, and this default for the others (the embedded stack's)"},
			{Name: "mailbox", Type: faults.TypeString, Default: DefaultMailbox,
				Doc: "imap: the mailbox each session selects"},
			{Name: "fetch", Type: faults.TypeInt, Unit: "messages", Default: "5", Min: "1", Max: "10000",
				Doc: "imap: each session fetches the envelopes of this many of the newest messages (all when there are fewer; none in an empty mailbox)"},
			{Name: "endpoint", Type: faults.TypeAddress,
				Doc: "the target endpoint to load (default: smtp, or imap with protocol imap)"},
			{Name: "timeout", Type: faults.TypeDuration, Default: "30s", Min: "1ms", Max: "1h",
				Doc: "deadline of the connection and of each exchange: smtp: a command, or a pipelined group of commands or the message body, and its replies; imap: the greeting, or a command and its responses"},
		},
	}
}

// Load is a load run as load-surge parameters describe it: [ParseParams]
// fills in Protocol and the configuration of that protocol; the caller
// sets where it goes and when it ends, and Start puts those fields into
// that configuration.
type Load struct {
	// Protocol is ProtocolSMTP (SMTP is used) or ProtocolIMAP (IMAP is).
	Protocol string
	// Addr is the server's host:port.
	Addr string
	// Duration ends the run after this long (0: no limit).
	Duration time.Duration
	// Count ends the run after this many messages or sessions (0: no
	// limit).
	Count int64
	// RunID names the run (default: random).
	RunID string
	// Grace is how long the work in flight gets to finish at the end
	// (default DefaultGrace).
	Grace time.Duration
	// SMTP configures protocol smtp (its fields above are Load's).
	SMTP Config
	// IMAP configures protocol imap (its fields above are Load's).
	IMAP IMAPConfig
}

// Generator is a load run of either protocol: [*Run] or [*IMAPRun].
type Generator interface {
	// RunID returns the run's ID.
	RunID() string
	// Done is closed when the run is over and its goroutines have ended.
	Done() <-chan struct{}
	// Stop ends the run gracefully and waits for it.
	Stop()
	// Report returns the figures so far, or the final ones.
	Report() Report
	// requestStop starts a graceful stop without waiting for it.
	requestStop()
	// endAsPlanned ends the run as its own end would, without waiting
	// for it.
	endAsPlanned()
	// scheduleEnded is closed once nothing more will be scheduled.
	scheduleEnded() <-chan struct{}
}

var (
	_ Generator = (*Run)(nil)
	_ Generator = (*IMAPRun)(nil)
)

// Start starts the run against l.Addr (see [Start] and [StartIMAP]).
func (l Load) Start(ctx context.Context) (Generator, error) {
	if l.Protocol == ProtocolIMAP {
		cfg := l.IMAP
		cfg.Addr, cfg.Duration, cfg.Count, cfg.RunID, cfg.Grace = l.Addr, l.Duration, l.Count, l.RunID, l.Grace
		return StartIMAP(ctx, cfg)
	}
	cfg := l.SMTP
	cfg.Addr, cfg.Duration, cfg.Count, cfg.RunID, cfg.Grace = l.Addr, l.Duration, l.Count, l.RunID, l.Grace
	return Start(ctx, cfg)
}

// ParseParams checks load-surge parameters and turns them into a load
// run: every problem is returned, joined, as [*faults.ParamError] values.
// users are the target's users (their addresses are the default
// recipients; their log-in names and passwords the default accounts);
// duration is the run's planned length, over which a ramp goes. Addr,
// Duration, Count, RunID and Grace are left for the caller.
func ParseParams(params faults.Params, users []faults.User, duration time.Duration) (Load, error) {
	l, errs := parseParams(params, users, duration)
	return l, errors.Join(errs...)
}

// parseParams is ParseParams with the errors as a list.
func parseParams(params faults.Params, users []faults.User, duration time.Duration) (Load, []error) {
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
	protocol := vals.String("protocol")
	for _, p := range spec.Params {
		if _, given := params[p.Name]; !given {
			continue
		}
		if kind := scheduleOf(p.Name); kind != "" && vals.String("schedule") != kind && !failed("schedule") {
			bad(p.Name, "only applies to schedule "+kind, "")
		}
		if proto := protocolOf(p.Name); proto != "" && protocol != proto && !failed("protocol") {
			bad(p.Name, "only applies to protocol "+proto, "")
		}
	}

	var sched Schedule
	switch vals.String("schedule") {
	case ScheduleConstant:
		sched = Constant(vals.Rate("rate"))
	case ScheduleRamp:
		need(ScheduleRamp, "rate-to")
		if duration <= 0 {
			bad("schedule", "a ramp needs a run duration to ramp over", "")
		}
		sched = Ramp(vals.Rate("rate"), vals.Rate("rate-to"), duration)
	case ScheduleStep:
		need(ScheduleStep, "steps")
		if s, ok := params["steps"]; ok {
			steps, err := ParseSteps(s)
			if err != nil {
				bad("steps", err.Error(), "RATE@OFFSET list such as 100@0s,300@10s,50@20s")
			}
			sched = Steps(steps)
		}
	case ScheduleSpike:
		need(ScheduleSpike, "spike-rate", "spike-at", "spike-for")
		sched = Spike(vals.Rate("rate"), vals.Rate("spike-rate"), vals.Duration("spike-at"), vals.Duration("spike-for"))
	}
	list := func(param string, dflt []string) []string {
		s, ok := params[param]
		if !ok {
			return dflt
		}
		var out []string
		for _, a := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(a))
		}
		return out
	}

	l := Load{Protocol: protocol}
	if protocol == ProtocolIMAP {
		l.IMAP = IMAPConfig{
			Schedule:    sched,
			Concurrency: vals.Int("concurrency"),
			Users:       list("users", logins(users)),
			Password:    vals.String("password"),
			Mailbox:     vals.String("mailbox"),
			Fetch:       vals.Int("fetch"),
			Timeout:     vals.Duration("timeout"),
		}
		if _, given := params["password"]; !given {
			// Each target user logs in with its own password.
			for _, u := range users {
				if u.Password != "" {
					if l.IMAP.Passwords == nil {
						l.IMAP.Passwords = map[string]string{}
					}
					l.IMAP.Passwords[u.LoginName()] = u.Password
				}
			}
		}
		for _, u := range l.IMAP.Users {
			if err := CheckUser(u); err != nil {
				bad("users", err.Error(), "comma-separated log-in names")
				break
			}
		}
		if l.IMAP.Password == "" {
			bad("password", "must not be empty", "")
		}
		if strings.TrimSpace(l.IMAP.Mailbox) == "" {
			bad("mailbox", "must not be empty", "a mailbox name such as INBOX")
		}
		return l, errs
	}

	l.SMTP = Config{
		Schedule:    sched,
		Concurrency: vals.Int("concurrency"),
		PerSession:  vals.Int("per-session"),
		Infected:    vals.Float("infected"),
		From:        vals.String("from"),
		Timeout:     vals.Duration("timeout"),
		Rcpts:       list("to", faults.Target{Users: users}.Addresses()),
	}
	if !failed("size") {
		size, err := ParseSizeRange(vals.String("size"))
		if err != nil {
			bad("size", err.Error(), "a size such as 4KB or a range such as 1KB-64KB, from 1 byte to 64MiB")
		}
		l.SMTP.Size = size
	}
	if err := CheckAddress(l.SMTP.From); err != nil {
		bad("from", err.Error(), "")
	}
	for _, a := range l.SMTP.Rcpts {
		if err := CheckAddress(a); err != nil {
			bad("to", err.Error(), "comma-separated addresses")
			break
		}
	}
	return l, errs
}

// logins returns the log-in names of users.
func logins(users []faults.User) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.LoginName())
	}
	return out
}

// protocolOf returns the protocol a parameter belongs to, or "" if it
// applies to both.
func protocolOf(param string) string {
	switch param {
	case "per-session", "size", "infected", "from", "to":
		return ProtocolSMTP
	case "users", "password", "mailbox", "fetch":
		return ProtocolIMAP
	}
	return ""
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
// target's SMTP or IMAP endpoint from Inject until Remove or the request's
// TTL. It is safe for concurrent use. It keeps every run it started,
// finished or not, so that Status and Accepted can report on it later;
// Forget drops one.
type Injector struct {
	mu   sync.Mutex
	runs map[string]*surge
}

// surge is one injected load run.
type surge struct {
	run    Generator
	cancel context.CancelFunc // releases the run's TTL context
	// plannedEnd is when the schedule ends by itself (the request's
	// duration from the start); zero without one.
	plannedEnd time.Time
}

// scheduleSlack is how close to its planned end a removal lets the
// schedule finish by itself, and how long past it the removal waits for
// that: a runner removes a step at the end it planned, a moment before
// the load, started a moment after the plan, reaches its own (later still
// on a busy machine); the last messages due are then still offered.
const scheduleSlack = 250 * time.Millisecond

var _ faults.Injector = (*Injector)(nil)

// New returns a load-surge injector.
func New() *Injector { return &Injector{runs: map[string]*surge{}} }

// Describe returns the load-surge spec.
func (i *Injector) Describe(context.Context) (faults.Spec, error) { return Spec(), nil }

// runTimes returns how long the run of req schedules load, and the grace
// that follows. A ramp goes over that duration: the planned one
// (req.Duration) when it leaves room for a grace before the TTL, else the
// TTL less a grace. Either way the run is over by the TTL.
func runTimes(req faults.Request) (duration, grace time.Duration) {
	if d := req.Duration; d > 0 && d < req.TTL {
		return d, min(DefaultGrace, req.TTL-d)
	}
	grace = min(DefaultGrace, req.TTL/4)
	return req.TTL - grace, grace
}

// config checks req and builds the run's configuration.
func (i *Injector) config(req faults.Request) (Load, error) {
	if req.TTL <= 0 {
		return Load{}, fmt.Errorf("%s: request %q has no TTL", Name, req.ID)
	}
	duration, grace := runTimes(req)
	l, errs := parseParams(req.Params, req.Target.Users, duration)
	endpoint := req.Params["endpoint"]
	if endpoint == "" {
		endpoint = ProtocolSMTP
		if l.Protocol == ProtocolIMAP {
			endpoint = ProtocolIMAP
		}
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
	runID := RunIDOf(req.Owner, req.ID)
	if err := CheckRunID(runID); err != nil {
		errs = append(errs, fmt.Errorf("%s: the run ID (the request's owner and ID): %w", Name, err))
	}
	l.Addr, l.Duration, l.Grace, l.RunID = addr, duration, grace, runID
	return l, errors.Join(errs...)
}

// Validate checks the parameters (with the cross-field rules: a ramp needs
// rate-to, a step schedule valid steps, a spike its three parameters;
// parameters of the other protocol are refused) and that the target has
// the endpoint, without touching the target.
func (i *Injector) Validate(_ context.Context, req faults.Request) error {
	_, err := i.config(req)
	return err
}

// Inject starts the load and returns at once. The load schedules until
// Remove or the end of req.Duration (when set), then gets a short grace;
// whatever happens it is over by req.TTL. The ID must not be in use by a
// run that is still active.
func (i *Injector) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	l, err := i.config(req)
	if err != nil {
		return faults.Handle{}, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if s, ok := i.runs[l.RunID]; ok {
		select {
		case <-s.run.Done():
		default:
			return faults.Handle{}, fmt.Errorf("%s: a run with ID %q is already active", Name, l.RunID)
		}
	}
	now := time.Now()
	h := faults.Handle{ID: req.ID, Fault: Name, Owner: req.Owner, Injected: now, Expires: now.Add(req.TTL)}
	// The run outlives the Inject call, but never its TTL.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), h.Expires)
	run, err := l.Start(rctx)
	if err != nil {
		cancel()
		return faults.Handle{}, fmt.Errorf("%s: start: %w", Name, err)
	}
	if old, ok := i.runs[l.RunID]; ok {
		old.cancel()
	}
	sg := &surge{run: run, cancel: cancel}
	if req.Duration > 0 {
		// The load's own end: its schedule counts from when it started,
		// which a busy machine may make a while after now.
		sg.plannedEnd = time.Now().Add(req.Duration)
	}
	i.runs[l.RunID] = sg
	return h, nil
}

// get returns the run of a handle, or nil.
func (i *Injector) get(h faults.Handle) *surge {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runs[RunIDOf(h.Owner, h.ID)]
}

// Remove stops the load gracefully and waits for it, aborting in-flight
// transactions and sessions if ctx ends first. A removal at most
// scheduleSlack before the planned end waits for the schedule to end by
// itself (up to scheduleSlack past the planned end); a load whose
// schedule has ended is left to finish in its grace, where the messages
// that were due are still offered. Removing a finished or unknown run is
// not an error.
func (i *Injector) Remove(ctx context.Context, h faults.Handle) error {
	s := i.get(h)
	if s == nil {
		return nil
	}
	if wait := time.Until(s.plannedEnd); !s.plannedEnd.IsZero() && wait <= scheduleSlack {
		t := time.NewTimer(max(wait, 0) + scheduleSlack)
		select {
		case <-s.run.scheduleEnded():
		case <-t.C:
		case <-s.run.Done():
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.run.endAsPlanned()
	select {
	case <-s.run.Done():
	case <-ctx.Done():
		s.cancel() // aborts at once
		<-s.run.Done()
	}
	s.cancel()
	return nil
}

// Status reports whether the load still runs, its figures (see
// [Result.StatusFigures] and [IMAPResult.StatusFigures]) and its summary
// as Detail. An unknown handle is reported inactive. A handle whose Data
// holds [DataQuery] [QueryAccounting] gets the run's [Accounting] as JSON
// in Detail instead of the summary ("" for an unknown or IMAP run).
func (i *Injector) Status(_ context.Context, h faults.Handle) (faults.Status, error) {
	s := i.get(h)
	query := h.Data[DataQuery] == QueryAccounting
	if s == nil {
		if query {
			return faults.Status{}, nil
		}
		return faults.Status{Detail: "no such load run in this process"}, nil
	}
	res := s.run.Report()
	if query {
		return faults.Status{Active: !res.Over(), Detail: accountingStatus(s.run)}, nil
	}
	return faults.Status{Active: !res.Over(), Figures: res.StatusFigures(), Detail: res.String()}, nil
}

// Accepted returns the X-Mailchaos-Ids the server accepted in the SMTP run
// of handle h (so far, if it still runs), or nil for an unknown handle or
// an IMAP run.
func (i *Injector) Accepted(h faults.Handle) []string {
	if s := i.get(h); s != nil {
		if r, ok := s.run.(*Run); ok {
			return r.Accepted()
		}
	}
	return nil
}

// Forget drops the record of a finished run. It returns false, and keeps
// the record, if the run is still active or unknown.
func (i *Injector) Forget(h faults.Handle) bool {
	id := RunIDOf(h.Owner, h.ID)
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
