package experiments

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
	"github.com/mailchaos/mailchaos/targets"
)

// Defaults.
const (
	defaultInterval        = time.Second
	defaultTimeout         = 10 * time.Second
	defaultRollbackTimeout = 30 * time.Second
)

// Catalog is what an experiment may name: the faults and probes.
type Catalog struct {
	Faults *faults.Registry
	Probes *probes.Registry
	// AllowRemote is the command line's consent to targets off loopback.
	AllowRemote bool
	// TargetFile, when set, is a target file that replaces every
	// experiment's own target: the same experiment run against another
	// stack (a laptop's, staging's) without editing it.
	TargetFile string
	// SteadyStateOnly reads files for [Check]: a file with no method (and
	// then no recovery bound) is valid.
	SteadyStateOnly bool
}

// Load reads, decodes and validates an experiment file. Every problem is
// reported at once, as yamlfile.Errors naming the file, line, column and
// field, with the nearest valid name suggested.
func Load(ctx context.Context, path string, cat Catalog) (*Experiment, error) {
	data, err := yamlfile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(ctx, path, data, cat)
}

// Parse is Load on bytes already read; name is used in errors.
//
// The file is decoded once. The embedded stack's config field overrides
// its profile's defaults field by field, so they are in place before the
// decoding; then the defaults of every field the file leaves out are
// filled in, and validation judges the values a run would use.
func Parse(ctx context.Context, name string, data []byte, cat Catalog) (*Experiment, error) {
	doc, err := yamlfile.Parse(name, data)
	if err != nil {
		return nil, err
	}
	exp := &Experiment{}
	exp.Target.presetConfig(doc)
	var errs []yamlfile.FieldError
	if err := doc.Decode(exp); err != nil {
		var ye yamlfile.Errors
		if !errors.As(err, &ye) {
			return nil, err
		}
		// Decoding errors first; validation of what did decode follows, so
		// that every mistake is reported in one go.
		errs = append(errs, fieldErrors(ye)...)
	}
	if cat.TargetFile != "" {
		exp.Target = Target{Kind: TargetExternal, File: cat.TargetFile}
	}
	exp.applyDefaults()
	errs = append(errs, exp.validate(ctx, cat)...)
	if len(errs) == 0 {
		return exp, nil
	}
	return nil, doc.Positioned(dedupe(errs))
}

// fieldErrors turns positioned decode errors back into field errors, so
// they merge with validation errors (their positions are found again).
func fieldErrors(l yamlfile.Errors) []yamlfile.FieldError {
	out := make([]yamlfile.FieldError, len(l))
	for i, e := range l {
		out[i] = yamlfile.FieldError{Field: e.Field, Msg: e.Msg}
	}
	return out
}

func dedupe(errs []yamlfile.FieldError) []yamlfile.FieldError {
	seen := map[yamlfile.FieldError]bool{}
	out := errs[:0]
	for _, e := range errs {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

// validate checks everything the decoder cannot: values, references between
// fields, and every fault's and probe's parameters against their schemas.
// It changes nothing: the defaults are in place already (applyDefaults).
func (e *Experiment) validate(ctx context.Context, cat Catalog) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if e.Version != 1 {
		add("version", "must be 1, got %d", e.Version)
	}
	if strings.TrimSpace(e.Title) == "" {
		add("title", "required: a title for reports")
	}
	target, targetRemote, terrs := e.Target.validate(cat.AllowRemote)
	errs = append(errs, terrs...)
	// The loopback guard for every address a probe or fault reaches: the
	// target must allow remote hosts and so must the command line.
	remoteOK := cat.AllowRemote && targetRemote
	guard := func(field string, spec faults.Spec, params map[string]string) {
		for _, err := range faults.CheckAddresses(spec, faults.Params(params), target, remoteOK) {
			var pe *faults.ParamError
			if errors.As(err, &pe) {
				add(field+".params."+pe.Param, "%s", pe.Msg)
			}
		}
	}

	// Steady state.
	if len(e.SteadyState) == 0 {
		add("steady-state", "at least one SLI is needed")
	}
	names := map[string]bool{}
	var sliNames []string
	for i, s := range e.SteadyState {
		f := fmt.Sprintf("steady-state[%d]", i)
		switch {
		case s.Name == "":
			add(f+".name", "required")
		case names[s.Name]:
			add(f+".name", "SLI %q is defined twice", s.Name)
		}
		names[s.Name] = true
		sliNames = append(sliNames, s.Name)
		if s.Interval < 10*time.Millisecond {
			add(f+".interval", "must be at least 10ms, got %s", s.Interval)
		}
		if s.Timeout < 0 {
			add(f+".timeout", "must be positive, got %s", s.Timeout)
		}
		if kind, err := cat.Probes.Get(s.Probe); err != nil {
			add(f+".probe", "%v", err)
		} else {
			pes := checkParams(kind.Spec(), s.Params)
			for _, pe := range pes {
				add(f+".params"+paramPath(pe), "%s", pe.Msg+allowed(pe))
			}
			if len(pes) == 0 {
				guard(f, kind.Spec(), s.Params)
			}
		}
		errs = append(errs, s.Tolerance.validate(f+".tolerance")...)
	}

	// Method.
	if len(e.Method) == 0 && !cat.SteadyStateOnly {
		add("method", "no fault: a run needs at least one; to measure the steady state alone, use mailchaos check")
	}
	stepNames := map[string]bool{}
	for i, st := range e.Method {
		f := fmt.Sprintf("method[%d]", i)
		if st.Name != "" {
			if stepNames[st.Name] {
				add(f+".name", "step %q is named twice", st.Name)
			}
			stepNames[st.Name] = true
		}
		if st.At < 0 {
			add(f+".at", "must not be negative, got %s", st.At)
		}
		if st.For <= 0 {
			add(f+".for", "must be positive, got %s", st.For)
		}
		inj, spec, err := cat.Faults.Get(st.Fault)
		if err != nil {
			add(f+".fault", "%v", err)
			continue
		}
		guard(f, spec, st.Params)
		req := faults.Request{ID: fmt.Sprintf("s%d", i), Fault: st.Fault, Target: target, Links: st.AllLinks(),
			Params: faults.Params(st.Params), TTL: max(st.For, time.Second) + faults.DefaultTTLGrace}
		for _, err := range faults.Flatten(inj.Validate(ctx, req)) {
			var pe *faults.ParamError
			if errors.As(err, &pe) {
				field := f + ".params" + paramPath(pe)
				if pe.Param == "link" {
					field = f + ".link"
					if st.Link == "" && len(st.Links) > 0 {
						field = f + ".links"
					}
				}
				add(field, "%s", pe.Msg+allowed(pe))
				continue
			}
			add(f, "%v", err)
		}
	}

	errs = append(errs, e.validateLoadProbes()...)

	// Recovery.
	// With no method there is nothing to recover from.
	if e.Recovery.Within <= 0 && len(e.Method) > 0 {
		add("recovery.within", "required and positive: how soon after the last fault every SLI must be back within tolerance")
	}
	if e.Recovery.Hold < 0 {
		add("recovery.hold", "must not be negative, got %s", e.Recovery.Hold)
	}
	if from := e.Recovery.From; from != "" && !stepNames[from] {
		var named []string
		for _, st := range e.Method {
			if st.Name != "" && !slices.Contains(named, st.Name) {
				named = append(named, st.Name)
			}
		}
		if len(named) == 0 {
			add("recovery.from", "no method step is named %q: give the step a name (method[N].name: %s) and refer to it here", from, from)
		} else {
			add("recovery.from", "no method step is named %q%s (named steps: %s)", from, suggest.Hint(from, named), strings.Join(named, ", "))
		}
	}
	if d := e.Recovery.During; d != nil {
		switch {
		case d.Within <= 0:
			add("recovery.during.within", "required and positive: how soon after the first fault every SLI must be back within tolerance, with the faults still in place")
		case d.Hold < 0:
			add("recovery.during.hold", "must not be negative, got %s", d.Hold)
		case d.Within+d.Hold > e.methodEnd():
			add("recovery.during", "within + hold (%s) must end before the last fault is removed (%s after the first)", d.Within+d.Hold, e.methodEnd())
		}
	}

	// Invariants.
	for i, inv := range e.Invariants {
		if !slices.Contains(Invariants(), inv) {
			add(fmt.Sprintf("invariants[%d]", i), "unknown invariant %q%s (valid: %s)", inv,
				suggest.Hint(inv, Invariants()), strings.Join(Invariants(), ", "))
		}
	}
	errs = append(errs, e.validateAccounting(target)...)

	// Safety.
	keys := make([]string, 0, len(e.Safety.AbortWhen))
	for k := range e.Safety.AbortWhen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := "safety.abort-when." + k
		if !names[k] {
			add(f, "no SLI is named %q%s (SLIs: %s)", k, suggest.Hint(k, sliNames), strings.Join(sliNames, ", "))
		}
		if _, err := ParseCondition(e.Safety.AbortWhen[k]); err != nil {
			add(f, "%v", err)
		}
	}
	if e.Safety.MaxDuration < 0 {
		add("safety.max-duration", "must not be negative")
	}
	if e.Safety.MaxDuration > 0 && len(errs) == 0 {
		if need := e.plannedDuration(); e.Safety.MaxDuration < need {
			add("safety.max-duration", "%s is shorter than the planned run (%s: baseline, method, recovery within and hold)",
				e.Safety.MaxDuration, need)
		}
	}

	// Rollbacks.
	if s := e.Rollbacks.Strategy; s != "" && s != "always" {
		add("rollbacks.strategy", "%q is not a strategy; the only one is \"always\": every fault is removed on every exit path", s)
	}
	if e.Rollbacks.Timeout < 0 {
		add("rollbacks.timeout", "must be positive, got %s", e.Rollbacks.Timeout)
	}
	return errs
}

// applyDefaults fills in what the file leaves out: the embedded stack's
// profile and the settings that follow from its configuration, each SLI's
// interval, timeout and statistic, the rollback timeout and the baseline.
// It runs before validation, which judges the values a run uses.
func (e *Experiment) applyDefaults() {
	e.Target.applyDefaults()
	for i := range e.SteadyState {
		s := &e.SteadyState[i]
		if s.Interval == 0 {
			s.Interval = defaultInterval
		}
		if s.Timeout == 0 {
			s.Timeout = min(defaultTimeout, 20*s.Interval)
		}
		if s.Tolerance.Stat == "" {
			s.Tolerance.Stat = "max"
		}
	}
	if e.Rollbacks.Timeout == 0 {
		e.Rollbacks.Timeout = defaultRollbackTimeout
	}
	if e.Baseline == 0 {
		e.Baseline = e.defaultBaseline()
	}
}

// defaultBaseline is the longest SLI window, at least three intervals.
func (e *Experiment) defaultBaseline() time.Duration {
	var d time.Duration
	for _, s := range e.SteadyState {
		d = max(d, s.Tolerance.Over, 3*s.Interval)
	}
	return d
}

// recoveryStart is when the recovery clock starts, from the start of the
// method: the planned end of the step named by recovery.from, else of the
// step that ends last.
func (e *Experiment) recoveryStart() time.Duration {
	for _, s := range e.Method {
		if e.Recovery.From != "" && s.Name == e.Recovery.From {
			return s.At + s.For
		}
	}
	return e.methodEnd()
}

// methodEnd is when the last fault ends, from the start of the method.
func (e *Experiment) methodEnd() time.Duration {
	var end time.Duration
	for _, s := range e.Method {
		end = max(end, s.At+s.For)
	}
	return end
}

// plannedDuration is the longest a run takes when nothing goes wrong.
func (e *Experiment) plannedDuration() time.Duration {
	b := e.Baseline
	if b == 0 {
		b = e.defaultBaseline()
	}
	return b + max(e.methodEnd(), e.recoveryStart()+e.Recovery.Within+e.Recovery.Hold)
}

func (t *Target) kind() string {
	if t.Kind == "" {
		return TargetMailstack
	}
	return t.Kind
}

// presetConfig sets the configuration that the embedded stack's config
// field is decoded over: that of the profile the file names, read from the
// parsed document before decoding it. It is left nil for another target
// kind or an unknown profile, which validation reports.
func (t *Target) presetConfig(doc *yamlfile.Doc) {
	if kind := scalar(doc, "target.kind"); kind != "" && kind != TargetMailstack {
		return
	}
	if cfg, err := targets.MailstackConfig(scalar(doc, "target.profile")); err == nil {
		t.Config = &cfg
	}
}

// scalar is the string written at path in doc, or "" when there is none.
func scalar(doc *yamlfile.Doc, path string) string {
	if n, ok := doc.Node(path); ok {
		if s, ok := n.(*ast.StringNode); ok {
			return s.Value
		}
	}
	return ""
}

// applyDefaults completes the embedded stack's configuration: its
// profile, and what follows from its other fields (engine and site names
// and listen addresses).
func (t *Target) applyDefaults() {
	if t.kind() != TargetMailstack || t.Config == nil {
		return
	}
	t.Config.Profile = cmp.Or(t.Profile, targets.DefaultProfile)
	t.Config.FillDefaults()
}

// validate checks the target. It returns the target as the faults will
// see it (for the embedded stack, its endpoints and links are known by
// name only) and whether it allows addresses off loopback: its target
// file's allow-remote when it names one, else its own.
func (t *Target) validate(allowRemote bool) (faults.Target, bool, []yamlfile.FieldError) {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch t.kind() {
	case TargetMailstack:
		if t.File != "" || len(t.Endpoints) > 0 || len(t.Links) > 0 || t.Toxiproxy != "" {
			add("target.kind", "endpoints, links, file and toxiproxy describe an external target: set kind: external")
		}
		if _, err := targets.MailstackConfig(t.Profile); err != nil {
			add("target.profile", "%v", err)
			return faults.Target{}, t.AllowRemote, errs
		}
		if t.Config == nil {
			return faults.Target{}, t.AllowRemote, errs
		}
		for _, fe := range t.Config.Validate() {
			add("target.config."+fe.Field, "%s", fe.Msg)
		}
	case TargetExternal:
		if t.Profile != "" || t.Config != nil {
			add("target.profile", "profile and config apply to the embedded mailstack only")
		}
		if t.File == "" {
			inline := t.file()
			for _, fe := range inline.Validate(allowRemote) {
				add("target."+fe.Field, "%s", fe.Msg)
			}
		}
	default:
		add("target.kind", "%q is not a target kind%s (valid: mailstack, external)", t.Kind,
			suggest.Hint(t.Kind, []string{TargetMailstack, TargetExternal}))
		return faults.Target{}, t.AllowRemote, errs
	}
	spec, err := t.spec(allowRemote)
	if err != nil {
		add("target.file", "%v", err)
		return faults.Target{}, t.AllowRemote, errs
	}
	remote := t.AllowRemote
	if spec.Mailstack == nil {
		remote = spec.File.AllowRemote
	}
	return spec.Describe(), remote, errs
}

// spec is the target, as validate accepts it, the way package targets
// starts it; an external target's file is read now. A file off loopback is
// refused unless it allows it and so does allowRemote.
func (t *Target) spec(allowRemote bool) (targets.Spec, error) {
	switch {
	case t.kind() == TargetMailstack && t.Config == nil:
		return targets.Spec{}, errors.New("the embedded stack has no configuration")
	case t.kind() == TargetMailstack:
		return targets.Spec{Mailstack: t.Config}, nil
	case t.File != "":
		f, err := targets.LoadFile(t.File, allowRemote)
		return targets.Spec{File: f}, err
	}
	return targets.Spec{File: t.file()}, nil
}

// file is the inline external target as a target file.
func (t *Target) file() targets.File {
	return targets.File{Toxiproxy: t.Toxiproxy, AllowRemote: t.AllowRemote, Endpoints: t.Endpoints, Users: t.Users, Links: t.Links,
		Quarantine: t.Quarantine}
}

func (tol *Tolerance) validate(f string) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if tol.Max == nil && tol.Min == nil && len(tol.Range) == 0 {
		add(f, "needs max, min or range")
	}
	if len(tol.Range) > 0 {
		if len(tol.Range) != 2 {
			add(f+".range", "needs exactly two values [low, high], got %d", len(tol.Range))
		} else if tol.Range[0] > tol.Range[1] {
			add(f+".range", "low %g is above high %g", tol.Range[0], tol.Range[1])
		}
		if tol.Max != nil || tol.Min != nil {
			add(f+".range", "use range or max/min, not both")
		}
	}
	if tol.Max != nil && tol.Min != nil && *tol.Min > *tol.Max {
		add(f+".min", "min %g is above max %g", *tol.Min, *tol.Max)
	}
	if tol.Over < 0 {
		add(f+".over", "must not be negative")
	}
	if tol.Stat != "" && !slices.Contains(Stats(), tol.Stat) {
		add(f+".stat", "unknown statistic %q%s (valid: %s)", tol.Stat, suggest.Hint(tol.Stat, Stats()), strings.Join(Stats(), ", "))
	}
	return errs
}

// checkParams validates probe parameters with the fault schema checker.
func checkParams(spec faults.Spec, params map[string]string) []*faults.ParamError {
	_, errs := faults.Check(spec, faults.Params(params))
	var out []*faults.ParamError
	for _, err := range errs {
		var pe *faults.ParamError
		if errors.As(err, &pe) {
			out = append(out, pe)
		}
	}
	return out
}

func paramPath(pe *faults.ParamError) string {
	if pe.Param == "" {
		return ""
	}
	return "." + pe.Param
}

func allowed(pe *faults.ParamError) string {
	if pe.Allowed == "" {
		return ""
	}
	return " (" + pe.Allowed + ")"
}
