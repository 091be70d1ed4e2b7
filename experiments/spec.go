// Package experiments reads experiment files and runs them: it checks the
// steady state, injects the faults on their timeline, measures how the
// target degrades and how fast it recovers, rolls every fault back, checks
// the invariants, and returns a verdict that a CI pipeline can gate on.
// Everything that happens is written to a journal (package journal) from
// which every report is rendered.
package experiments

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// Experiment is an experiment file. Field names follow Chaos Toolkit's
// vocabulary where it fits (steady-state, method, rollbacks, tolerance).
type Experiment struct {
	// Version of the file format; 1.
	Version int `yaml:"version" json:"version"`
	// Title names the experiment in reports.
	Title string `yaml:"title" json:"title"`
	// Description says what it shows.
	Description string `yaml:"description" json:"description,omitempty"`
	// Tags are free labels.
	Tags []string `yaml:"tags" json:"tags,omitempty"`
	// Target is the system under test.
	Target Target `yaml:"target" json:"target"`
	// Baseline is how long the steady state is measured before anything is
	// hurt. Default: the longest SLI window, at least three intervals.
	Baseline time.Duration `yaml:"baseline" json:"baseline,omitempty"`
	// SteadyState is the hypothesis: the SLIs and their tolerances.
	SteadyState []SLI `yaml:"steady-state" json:"steady-state"`
	// Method is the timeline of faults.
	Method []Step `yaml:"method" json:"method"`
	// Recovery bounds how fast every SLI is back within tolerance.
	Recovery Recovery `yaml:"recovery" json:"recovery"`
	// Invariants must hold at the end: no-mail-lost,
	// infected-never-delivered, no-duplicates.
	Invariants []string `yaml:"invariants" json:"invariants,omitempty"`
	// Accounting says how the invariants are checked on an external
	// target: how long to wait for delivery, and whether to remove the
	// run's messages afterwards.
	Accounting Accounting `yaml:"accounting" json:"accounting,omitzero"`
	// Safety stops the run early.
	Safety Safety `yaml:"safety" json:"safety"`
	// Rollbacks says when faults are removed.
	Rollbacks Rollbacks `yaml:"rollbacks" json:"rollbacks"`
}

// Target kinds.
const (
	TargetMailstack = "mailstack"
	TargetExternal  = "external"
)

// Target is the system under test: the embedded reference stack (the
// default) or an external stack described by addresses.
type Target struct {
	// Kind is mailstack (default) or external.
	Kind string `yaml:"kind" json:"kind,omitempty"`
	// Profile is the embedded stack's scanning policy: remediated (default)
	// or incident.
	Profile string `yaml:"profile" json:"profile,omitempty"`
	// Config overrides fields of the embedded stack's configuration (the
	// same fields as `mailchaos target serve mailstack --config`). Listen
	// addresses default to free loopback ports.
	Config *mailstack.Config `yaml:"config" json:"config,omitempty"`
	// File is a target file describing an external stack.
	File string `yaml:"file" json:"file,omitempty"`
	// The external stack inline, as in a target file.
	Toxiproxy   string             `yaml:"toxiproxy" json:"toxiproxy,omitempty"`
	AllowRemote bool               `yaml:"allow-remote" json:"allow-remote,omitempty"`
	Endpoints   map[string]string  `yaml:"endpoints" json:"endpoints,omitempty"`
	Users       []targets.FileUser `yaml:"users" json:"users,omitempty"`
	Links       []targets.FileLink `yaml:"links" json:"links,omitempty"`
	Quarantine  string             `yaml:"quarantine" json:"quarantine,omitempty"`
}

// DefaultAccountingWait is how long accounting waits, by default, for
// every accepted message to show up in a mailbox of an external target.
const DefaultAccountingWait = time.Minute

// Accounting configures the invariants' check on an external target,
// which reads the users' mailboxes back over IMAP.
type Accounting struct {
	// Wait bounds how long, after the method, accounting waits for every
	// message the target accepted to be delivered (default
	// DefaultAccountingWait). What is still missing then is lost.
	Wait time.Duration `yaml:"wait" json:"wait,omitempty"`
	// Cleanup removes the run's messages (those whose X-Mailchaos-Id
	// starts with the run's ID) from the users' mailboxes once counted,
	// and nothing else; a run that stops before its accounting (an abort,
	// a signal, an error) removes those delivered by then.
	Cleanup bool `yaml:"cleanup" json:"cleanup,omitempty"`
}

// SLI is one service-level indicator of the steady-state hypothesis.
type SLI struct {
	// Name identifies the SLI in reports and abort conditions.
	Name string `yaml:"name" json:"name"`
	// Probe measures it: smtp-canary, imap-login, metric, tcp, banner.
	Probe string `yaml:"probe" json:"probe"`
	// Params are the probe's parameters.
	Params map[string]string `yaml:"params" json:"params,omitempty"`
	// Interval between samples. Default 1s.
	Interval time.Duration `yaml:"interval" json:"interval,omitempty"`
	// Timeout of one sample (a canary not delivered by then is a failure).
	// Default 10s, at most the interval times 20.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Tolerance is what "within tolerance" means.
	Tolerance Tolerance `yaml:"tolerance" json:"tolerance"`
}

// Tolerance bounds an SLI. Values are numbers, durations (in seconds:
// "2s" is 2) or percentages ("99%" is 0.99).
type Tolerance struct {
	Max   *Quantity  `yaml:"max" json:"max,omitempty"`
	Min   *Quantity  `yaml:"min" json:"min,omitempty"`
	Range []Quantity `yaml:"range" json:"range,omitempty"`
	// Over is the window the statistic is taken over; 0 means each sample
	// on its own.
	Over time.Duration `yaml:"over" json:"over,omitempty"`
	// Stat is the statistic over the window: max (default), min, mean,
	// last, or a percentile p50, p90, p95, p99, p999.
	Stat string `yaml:"stat" json:"stat,omitempty"`
}

// Step is one entry of the method: a fault from At for For.
type Step struct {
	// Name names the step, so that recovery.from and the load probe can
	// refer to it. Optional; unique within the method.
	Name string `yaml:"name" json:"name,omitempty"`
	// Fault is the fault's name (mailchaos faults lists them).
	Fault string `yaml:"fault" json:"fault"`
	// At is when it starts, from the start of the method.
	At time.Duration `yaml:"at" json:"at"`
	// For is how long it stays.
	For time.Duration `yaml:"for" json:"for"`
	// Link or Links name the links a network fault sits on.
	Link  string   `yaml:"link" json:"link,omitempty"`
	Links []string `yaml:"links" json:"links,omitempty"`
	// Params are the fault's parameters.
	Params map[string]string `yaml:"params" json:"params,omitempty"`
}

// AllLinks is Link and Links together.
func (s Step) AllLinks() []string {
	if s.Link == "" {
		return s.Links
	}
	return append([]string{s.Link}, s.Links...)
}

// Recovery is the recovery bound. The clock starts at the planned end
// (at + for) of the last fault, or of the step named by From: never when a
// load generator has finished draining its messages in flight.
type Recovery struct {
	// Within: after the planned end of the last fault (or of From), every
	// SLI is back within tolerance within this long ...
	Within time.Duration `yaml:"within" json:"within"`
	// ... and stays so for Hold.
	Hold time.Duration `yaml:"hold" json:"hold"`
	// From names the method step whose planned end starts the clock, so
	// that an experiment can assert recovery from one fault (a slow AV
	// engine) while another (the load) goes on. Default: the step that
	// ends last.
	From string `yaml:"from" json:"from,omitempty"`
	// During, if set, asks more: that the stack recovers while the faults
	// are still in place (a balancer routing around a gray site), not only
	// once they are removed.
	During *DuringFaults `yaml:"during" json:"during,omitempty"`
}

// DuringFaults is recovery with the faults in place: within Within of the
// first fault's injection, every SLI is within tolerance and stays so for
// Hold, all before the last fault is removed.
type DuringFaults struct {
	Within time.Duration `yaml:"within" json:"within"`
	Hold   time.Duration `yaml:"hold" json:"hold"`
}

// Safety holds the abort conditions.
type Safety struct {
	// AbortWhen maps an SLI name to a condition on its latest sample, such
	// as "> 5000" or ">= 30s"; when it holds, every fault is rolled back at
	// once and the run ends (exit 3).
	AbortWhen map[string]string `yaml:"abort-when" json:"abort-when,omitempty"`
	// MaxDuration is a hard limit on the whole run.
	MaxDuration time.Duration `yaml:"max-duration" json:"max-duration,omitempty"`
}

// Rollbacks is the rollback strategy.
type Rollbacks struct {
	// Strategy is "always" (the default and only one): every fault is
	// removed on every exit path.
	Strategy string `yaml:"strategy" json:"strategy,omitempty"`
	// Timeout bounds the removal of each fault. Default 30s.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Invariant names.
const (
	InvariantNoMailLost         = "no-mail-lost"
	InvariantInfectedNotDeliver = "infected-never-delivered"
	InvariantNoDuplicates       = "no-duplicates"
)

// Invariants lists the valid invariant names.
func Invariants() []string {
	return []string{InvariantNoMailLost, InvariantInfectedNotDeliver, InvariantNoDuplicates}
}

// Stats lists the valid tolerance statistics.
func Stats() []string {
	return []string{"max", "min", "mean", "last", "p50", "p90", "p95", "p99", "p999"}
}

// Quantity is a tolerance value: a number, a duration in seconds ("2s"), or
// a percentage ("99%").
type Quantity float64

// UnmarshalText parses a quantity.
func (q *Quantity) UnmarshalText(b []byte) error {
	v, err := ParseQuantity(string(b))
	if err != nil {
		return err
	}
	*q = Quantity(v)
	return nil
}

// MarshalText writes a quantity as a number.
func (q Quantity) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(q), 'g', -1, 64)), nil
}

// JSONSchema describes a quantity for the generated schema.
func (Quantity) JSONSchema() map[string]any {
	return map[string]any{
		"description": "a number, a duration such as 2s (in seconds), or a percentage such as 99%",
		"type":        []string{"number", "string"},
	}
}

// ParseQuantity parses a number, a duration (as seconds) or a percentage.
func ParseQuantity(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return f, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		if f, err := strconv.ParseFloat(strings.TrimSpace(p), 64); err == nil {
			return f / 100, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d.Seconds(), nil
	}
	return 0, fmt.Errorf("%q is not a number, a duration (2s) or a percentage (99%%)", s)
}

// Condition is a parsed abort condition: the latest value Op Value.
type Condition struct {
	Op    string
	Value float64
}

// ParseCondition parses "> 5000", ">= 30s", "< 99%".
func ParseCondition(s string) (Condition, error) {
	s = strings.TrimSpace(s)
	for _, op := range []string{">=", "<=", "==", ">", "<"} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			v, err := ParseQuantity(rest)
			if err != nil {
				return Condition{}, err
			}
			return Condition{Op: op, Value: v}, nil
		}
	}
	return Condition{}, fmt.Errorf("%q is not a condition such as \"> 5000\" or \">= 30s\"", s)
}

// Holds reports whether v meets the condition.
func (c Condition) Holds(v float64) bool {
	switch c.Op {
	case ">":
		return v > c.Value
	case ">=":
		return v >= c.Value
	case "<":
		return v < c.Value
	case "<=":
		return v <= c.Value
	}
	return v == c.Value
}

func (c Condition) String() string { return fmt.Sprintf("%s %g", c.Op, c.Value) }
