// Package journal is the append-only record of an experiment run: JSON
// Lines, one event per line, written and flushed as the run goes so that a
// run that crashes still leaves a readable prefix. Every report is rendered
// from a journal, and `mailchaos recover` reads one to remove the faults a
// crashed run left behind.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Event types.
const (
	// TypeRunStart opens a run: Experiment holds the fully resolved
	// experiment, Target the target as the faults saw it.
	TypeRunStart = "run-start"
	// TypePhase marks the start of a phase (baseline, inject, recover,
	// accounting, rollback).
	TypePhase = "phase"
	// TypeSample is one probe measurement of an SLI.
	TypeSample = "sample"
	// TypeIntent is a fault about to be injected, written before anything
	// is created: Handle has its ID, owner and fault, by which toxics are
	// named, and every toxiproxy server of the target (Toxiproxy, then
	// Servers), so that a run killed in the middle of an injection leaves
	// nothing `recover` cannot find, on any server.
	TypeIntent = "intent"
	// TypeInject is a fault injected: Handle says how to remove it.
	TypeInject = "inject"
	// TypeRemove is a fault removed (Err set if removal failed).
	TypeRemove = "remove"
	// TypeAssertion is a checked hypothesis, bound or invariant.
	TypeAssertion = "assertion"
	// TypeAbort is a safety condition that stopped the run.
	TypeAbort = "abort"
	// TypeLog is a message worth keeping.
	TypeLog = "log"
	// TypeLoad is what a load-surge step did over the last window, ending
	// at At (Step, Fault, Load): written about every second while the
	// step is in place, for reports to draw the load's rates and latency.
	TypeLoad = "load"
	// TypeVerdict closes a run.
	TypeVerdict = "verdict"
)

// Run statuses (chaostoolkit's vocabulary).
const (
	StatusCompleted   = "completed"   // ran to the end; see Deviated
	StatusFailed      = "failed"      // the system under test failed an assertion
	StatusAborted     = "aborted"     // a safety condition or an error stopped the run
	StatusInterrupted = "interrupted" // a signal stopped the run
)

// Event is one line of a journal. Fields not relevant to a type are empty.
type Event struct {
	T    time.Time `json:"t"`
	Type string    `json:"type"`
	Run  string    `json:"run,omitempty"`

	// run-start
	Title      string          `json:"title,omitempty"`
	File       string          `json:"file,omitempty"`
	Experiment json.RawMessage `json:"experiment,omitempty"`
	Target     *faults.Target  `json:"target,omitempty"`

	// phase
	Phase string `json:"phase,omitempty"`
	// SLIs names each SLI's unit and tolerance, on the baseline phase
	// (once the probes know their units), so that a journal cut short
	// before its verdict still reads in units. Absent in journals written
	// before summary version 2.
	SLIs []SLIInfo `json:"slis,omitempty"`

	// sample: At is when the measurement started; Value is in the SLI's
	// unit (seconds for latencies); Failed means the probe failed (counts
	// as out of tolerance).
	SLI    string    `json:"sli,omitempty"`
	At     time.Time `json:"at,omitzero"`
	Value  float64   `json:"value,omitempty"`
	Failed bool      `json:"failed,omitempty"`
	// Class is the sample's class of outcome, for probes that have them
	// (smtp-transaction: 2xx, 4xx, 5xx, timeout, conn-error).
	Class string `json:"class,omitempty"`

	// load: the window's figures (with Step and Fault, At its end).
	Load *LoadWindow `json:"load,omitempty"`

	// inject / remove
	Step   int            `json:"step,omitempty"`
	Fault  string         `json:"fault,omitempty"`
	Handle *faults.Handle `json:"handle,omitempty"`

	// assertion: Name identifies it ("steady-state baseline: delivery-p99",
	// "recovery: delivery-p99", "invariant: no-mail-lost"); Measured and
	// Bound are human-readable.
	Name     string `json:"name,omitempty"`
	Passed   *bool  `json:"passed,omitempty"`
	Measured string `json:"measured,omitempty"`
	Bound    string `json:"bound,omitempty"`

	// verdict
	Status   string        `json:"status,omitempty"`
	Deviated bool          `json:"deviated,omitempty"`
	ExitCode int           `json:"exit_code,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Summary  *Summary      `json:"summary,omitempty"`

	// Message explains (log, abort, errors of remove, verdict).
	Message string `json:"message,omitempty"`
	Err     string `json:"error,omitempty"`
}

// SLIInfo is what a report needs to know of an SLI before any verdict.
type SLIInfo struct {
	Name      string `json:"name"`
	Unit      string `json:"unit,omitempty"`
	Tolerance string `json:"tolerance,omitempty"`
}

// SummaryVersion is the version of [Summary] this package writes. Version
// 0 (the field absent) is a journal written before versions: its
// summaries have no sample counts, no last values, and an empty summary
// on a run that stopped before the recovery phase. Readers treat every
// field added since as unknown when Version is lower.
const SummaryVersion = 2

// LoadWindow is what a load did over a window: rates per second, shares
// (0 to 1) of the items settled in the window, and latency percentiles in
// seconds from each item's scheduled time (nil when nothing got through).
type LoadWindow struct {
	Seconds      float64  `json:"seconds"`
	OfferedRate  float64  `json:"offered_rate"`
	AcceptedRate float64  `json:"accepted_rate"`
	Settled      float64  `json:"settled"`
	Tempfail     float64  `json:"tempfail,omitempty"`
	Rejected     float64  `json:"rejected,omitempty"`
	ConnError    float64  `json:"conn_error,omitempty"`
	Timeout      float64  `json:"timeout,omitempty"`
	Cut          float64  `json:"cut,omitempty"`
	Unsent       float64  `json:"unsent,omitempty"`
	P50          *float64 `json:"p50,omitempty"`
	P99          *float64 `json:"p99,omitempty"`
}

// Summary is the per-SLI outcome, kept in the verdict for reports. Every
// run that took samples has one, whatever its exit path: a run that
// stopped early has the figures it got to (RecoveryJudged false).
type Summary struct {
	// Version is [SummaryVersion] when written; 0 in old journals.
	Version int          `json:"version,omitempty"`
	SLIs    []SLISummary `json:"slis"`
	// RecoveryJudged is true when the run reached the recovery verdict,
	// so TimeToRecover and each SLI's recovery figures mean something.
	RecoveryJudged bool `json:"recovery_judged,omitempty"`
	// TimeToRecover is the largest per-SLI time-to-recover; negative means
	// some SLI did not recover.
	TimeToRecover time.Duration `json:"time_to_recover"`
	// RecoveryBound is the experiment's `recovery.within`.
	RecoveryBound time.Duration `json:"recovery_bound"`
	// RecoveryFrom names the step whose planned end started the recovery
	// clock.
	RecoveryFrom string `json:"recovery_from,omitempty"`
}

// SLISummary is one SLI's figures over the run.
type SLISummary struct {
	Name      string `json:"name"`
	Tolerance string `json:"tolerance"`
	Unit      string `json:"unit,omitempty"`
	// Baseline is the window statistic the baseline assertion judged;
	// Worst the worst one while faults were planned to be in place.
	Baseline float64 `json:"baseline"`
	// NoBaseline is true for an SLI measured only while a method step
	// runs (the load probe): it has no baseline value.
	NoBaseline bool    `json:"no_baseline,omitempty"`
	Worst      float64 `json:"worst"`
	// TimeToRecover from the planned end of the last fault (or of the step
	// recovery.from names); negative: not recovered.
	TimeToRecover time.Duration `json:"time_to_recover"`
	Recovered     bool          `json:"recovered"`
	Passed        bool          `json:"passed"`
	// Failures counts the evaluations during the faults whose window held
	// a failed sample (the probe could not measure at all).
	Failures int `json:"failures,omitempty"`
	// FailedSamples counts the SLI's failed samples over the whole run,
	// and LastFailure says why the last of them failed.
	FailedSamples int    `json:"failed_samples,omitempty"`
	LastFailure   string `json:"last_failure,omitempty"`
	// During is the recovery with the faults in place, when the experiment
	// asks for it (recovery.during).
	During *DuringSummary `json:"during,omitempty"`

	// Fields of version 2.

	// Samples counts the SLI's samples over the run.
	Samples int `json:"samples,omitempty"`
	// BaselineJudged is true when the baseline assertion judged the SLI
	// (Baseline is then its value); BaselinePassed is its result and
	// BaselineFailed the failed samples in the window it judged. A
	// baseline window whose samples all failed has no value
	// (BaselineMeasured false).
	BaselineJudged   bool `json:"baseline_judged,omitempty"`
	BaselineMeasured bool `json:"baseline_measured,omitempty"`
	BaselinePassed   bool `json:"baseline_passed,omitempty"`
	BaselineFailed   int  `json:"baseline_failed,omitempty"`
	// Evaluations counts the windows evaluated while the faults were
	// planned to be in place; WorstMeasured is false when none of them
	// had a measured value (every one held a failed sample, or there was
	// none), and Worst is then meaningless. WorstOut is true when Worst
	// is out of tolerance.
	Evaluations   int  `json:"evaluations,omitempty"`
	WorstMeasured bool `json:"worst_measured,omitempty"`
	WorstOut      bool `json:"worst_out,omitempty"`
	// Last is the last measured value (LastMeasured false: no sample
	// measured one) and LastFailed whether the very last sample failed.
	Last         float64 `json:"last,omitempty"`
	LastMeasured bool    `json:"last_measured,omitempty"`
	LastFailed   bool    `json:"last_failed,omitempty"`
	// OutFor is how long the SLI was out of tolerance after the recovery
	// clock started, up to the end of the recovery phase.
	OutFor time.Duration `json:"out_for,omitempty"`
	// Hold is recovery.hold, the time an SLI must stay in tolerance.
	Hold time.Duration `json:"hold,omitempty"`
}

// DuringSummary is one SLI's recovery with the faults still in place.
type DuringSummary struct {
	// TimeToRecover from the first fault's injection; negative: not
	// recovered while the faults were in place.
	TimeToRecover time.Duration `json:"time_to_recover"`
	Recovered     bool          `json:"recovered"`
	Passed        bool          `json:"passed"`
	// Bound is recovery.during.within.
	Bound time.Duration `json:"bound"`
}

// Writer appends events to a journal. Safe for concurrent use; each event
// is written and flushed to the OS before Write returns.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	f   *os.File
	enc *json.Encoder
	run string
	err error
}

// Create creates a new journal file at path, readable and writable by its
// owner only (mode 0600). It never overwrites and never follows a symbolic
// link: anything already at path, a link included, is refused with an error
// that wraps [fs.ErrExist].
func Create(path, run string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	w := NewWriter(f, run)
	w.f = f
	return w, nil
}

// Append opens an existing journal to add events to it (what `mailchaos
// recover` does). A truncated last line, left by a run that crashed
// mid-write and ignored by Read, is cut off first. path must be a regular
// file, not a symbolic link: the file that is read is the one written.
func Append(path, run string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	fail := func(err error) (*Writer, error) {
		f.Close()
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fail(err)
	}
	keep := int64(bytes.LastIndexByte(data, '\n') + 1)
	if err := f.Truncate(keep); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(keep, io.SeekStart); err != nil {
		return fail(err)
	}
	w := NewWriter(f, run)
	w.f = f
	return w, nil
}

// NewWriter writes a journal to w.
func NewWriter(w io.Writer, run string) *Writer {
	return &Writer{w: w, enc: json.NewEncoder(w), run: run}
}

// Write appends e, stamping its time and run if unset. The first error is
// kept and returned by every later call and by Close.
func (w *Writer) Write(e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if e.T.IsZero() {
		e.T = time.Now()
	}
	if e.Run == "" {
		e.Run = w.run
	}
	if err := w.enc.Encode(e); err != nil {
		w.err = fmt.Errorf("journal: %w", err)
		return w.err
	}
	return nil
}

// Close closes the journal file, if Create opened one.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		if err := w.f.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("journal: %w", err)
		}
		w.f = nil
	}
	return w.err
}

// Read reads every event of a journal. A truncated last line (a run that
// crashed mid-write) is ignored; any other bad line is an error naming it.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	line := 0
	var pendingErr error
	for sc.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Only the last line may be cut short.
			pendingErr = &LineError{Line: line, Err: err}
			continue
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return out, nil
}

// ReadFile reads a journal file.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	defer f.Close()
	evs, err := Read(f)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return evs, nil
}

// LineError is a line that is not a journal event.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: not a journal event: %v", e.Line, e.Err)
}

// FileError is a journal that cannot be read.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// InvalidInput marks an unreadable journal as the user's input (exit 2).
func (e *FileError) InvalidInput() bool { return true }

// Outstanding returns the handles of faults a journal shows as injected and
// never (successfully) removed, in injection order.
func Outstanding(events []Event) []faults.Handle {
	removed, injected := map[string]bool{}, map[string]bool{}
	for _, e := range events {
		switch {
		case e.Handle == nil:
		case e.Type == TypeRemove && e.Err == "":
			removed[e.Handle.ID] = true
		case e.Type == TypeInject:
			injected[e.Handle.ID] = true
		}
	}
	var out []faults.Handle
	for _, e := range events {
		if e.Handle == nil || removed[e.Handle.ID] {
			continue
		}
		switch {
		case e.Type == TypeInject:
			out = append(out, *e.Handle)
		case e.Type == TypeIntent && !injected[e.Handle.ID]:
			// An injection that never reported back: whatever it
			// created carries the owner and ID in its name.
			out = append(out, *e.Handle)
		}
	}
	return out
}

// ErrNoVerdict is reported for a journal that has no verdict: the run did
// not finish (it crashed or is still going).
var ErrNoVerdict = errors.New("the journal has no verdict: the run did not finish")
