// Package probes measures service-level indicators of a target from the
// outside, the way its users see it: the end-to-end delivery time of a
// canary message (SMTP in, IMAP out), the latency and outcome of an SMTP
// transaction as a sending client sees it, IMAP log-in success and
// latency, a Prometheus metric scraped from the target, TCP or banner
// reachability, and what the experiment's own load saw over a window.
// Each probe takes one sample per call; the runner calls it on the SLI's
// interval and journals every sample.
package probes

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Sample is one measurement.
type Sample struct {
	// At is when the measurement started.
	At time.Time
	// Value is the measurement in the probe's unit (seconds for latencies,
	// 0..1 for success, the metric's own unit for metrics).
	Value float64
	// Failed is true when the probe could not measure (the canary never
	// arrived, the log-in failed, the endpoint did not answer): a failed
	// sample is out of tolerance.
	Failed bool
	// Err says why it failed. A probe that reports failures as values
	// (imap-login with measure success: Value 0) sets it on samples that
	// are not Failed too.
	Err string
	// Skip is true for a sample that carries no value (the first scrape of
	// a counter rate): it is neither in nor out of tolerance.
	Skip bool
	// Class classifies the outcome for probes that have classes of
	// outcome (smtp-transaction: the reply class 2xx, 4xx, 5xx, or
	// timeout, conn-error); "" for the others. It is journaled with the
	// sample.
	Class string
}

// Probe measures one SLI. Measure may be called concurrently (a slow
// canary must not stop the next one from going out) and must return by
// ctx's deadline.
type Probe interface {
	Measure(ctx context.Context) Sample
	// Close releases connections the probe keeps.
	Close() error
}

// Config is what a probe is built from.
type Config struct {
	// Name is the SLI's name (for messages and canary IDs).
	Name string
	// Params are the probe's parameters, checked against its Spec.
	Params faults.Params
	// Target is the system under test.
	Target faults.Target
	// RunID tags what the probe sends (canaries carry X-Mailchaos-Id:
	// <RunID>-<Name>-<n>).
	RunID string
	// Loads reads the live Status of the experiment's load-surge steps,
	// for the load probe; nil outside an experiment run.
	Loads LoadReader
}

// Kind is one probe type.
type Kind struct {
	// Name is how experiment files call it ("smtp-canary").
	Name string
	// Summary is one line.
	Summary string
	// Unit of its values ("s", "ratio", "" for metrics). A probe that
	// implements [Uniter] knows its unit better (it depends on parameters).
	Unit string
	// Params is the parameter schema (validated with faults.Check).
	Params []faults.Param
	// New builds a probe from validated parameters.
	New func(cfg Config) (Probe, error)
}

// Spec returns the kind as a faults.Spec, to validate parameters with
// faults.Check.
func (k Kind) Spec() faults.Spec {
	return faults.Spec{Name: k.Name, Summary: k.Summary, Params: k.Params}
}

// Registry holds the probe kinds, by name.
type Registry struct{ kinds map[string]Kind }

// NewRegistry returns a registry of the given kinds.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: map[string]Kind{}}
	for _, k := range kinds {
		r.kinds[k.Name] = k
	}
	return r
}

// Get returns a kind, or an error that suggests the nearest name.
func (r *Registry) Get(name string) (Kind, error) {
	k, ok := r.kinds[name]
	if !ok {
		return Kind{}, fmt.Errorf("unknown probe %q%s (known: %s)", name, faults.Suggest(name, r.Names()), strings.Join(r.Names(), ", "))
	}
	return k, nil
}

// Names lists the kinds, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
