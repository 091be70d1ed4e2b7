package experiments

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

var _ probes.LoadReader = (*runner)(nil)

// LoadStatus reads the live Status of a load-surge step of the method,
// for the load probe (see [probes.LoadReader]): the step named step, or
// with step "" the method's only load-surge step. running is false while
// the step's fault is not in place (before its injection, once removed).
func (r *runner) LoadStatus(ctx context.Context, step string) (faults.Status, bool, error) {
	i, err := r.exp.loadStep(step)
	if err != nil {
		return faults.Status{}, false, err
	}
	for _, p := range r.lifecycle.InPlace() {
		if p.Step != i {
			continue
		}
		st, err := p.Injector.Status(ctx, p.Handle)
		if err != nil {
			return faults.Status{}, true, fmt.Errorf("status of method[%d] (%s): %w", i, p.Handle.Fault, err)
		}
		return st, true, nil
	}
	return faults.Status{}, false, nil
}

// loadSteps returns the indexes of the method's load-surge steps and the
// names of those that have one.
func (e *Experiment) loadSteps() (idx []int, names []string) {
	for i, st := range e.Method {
		if st.Fault != loadfig.FaultName {
			continue
		}
		idx = append(idx, i)
		if st.Name != "" {
			names = append(names, st.Name)
		}
	}
	return idx, names
}

// loadStep resolves the step parameter of a load probe: the index of the
// load-surge step named name, or with name "" of the only one.
func (e *Experiment) loadStep(name string) (int, error) {
	idx, names := e.loadSteps()
	if name == "" {
		switch len(idx) {
		case 0:
			return -1, fmt.Errorf("the method has no %s step to read", loadfig.FaultName)
		case 1:
			return idx[0], nil
		}
		return -1, fmt.Errorf("the method has %d %s steps (%s): name the one to read with parameter step",
			len(idx), loadfig.FaultName, stepList(names))
	}
	for i, st := range e.Method {
		if st.Name != name {
			continue
		}
		if st.Fault != loadfig.FaultName {
			return -1, fmt.Errorf("method step %q is not a %s step but %s (%s steps: %s)", name,
				loadfig.FaultName, st.Fault, loadfig.FaultName, stepList(names))
		}
		return i, nil
	}
	return -1, fmt.Errorf("no method step is named %q%s (%s steps: %s)", name, suggest.Hint(name, names),
		loadfig.FaultName, stepList(names))
}

// stepList writes the names of steps for messages.
func stepList(names []string) string {
	if len(names) == 0 {
		return "none has a name; give it one with name:"
	}
	return strings.Join(names, ", ")
}

// validateLoadProbes checks that every load probe reads a load-surge step
// of the method: the error is at its step parameter (at the probe when the
// parameter is not given), with the valid names.
func (e *Experiment) validateLoadProbes() []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	for i, s := range e.SteadyState {
		if s.Probe != probes.KindLoad {
			continue
		}
		name, given := s.Params["step"]
		field := fmt.Sprintf("steady-state[%d].params.step", i)
		if !given {
			field = fmt.Sprintf("steady-state[%d].probe", i)
		}
		step, err := e.loadStep(name)
		if err != nil {
			errs = append(errs, yamlfile.FieldError{Field: field, Msg: err.Error()})
			continue
		}
		// The probe has samples only while its load runs: the recovery
		// clock must start early enough for the hold to be judged on them.
		// The first sample after the clock starts comes up to an interval
		// later, and the one that ends the hold up to an interval past it;
		// one due at the load's very end may find it ended.
		st := e.Method[step]
		if from := e.recoveryStart(); st.At+st.For <= from+e.Recovery.Hold+2*s.Interval {
			errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(
				"the load of method[%d] ends %s into the method, but the recovery clock starts at %s, its hold lasts %s and this SLI samples every %s: "+
					"it would have too few samples to recover on; anchor the clock to the fault that hurts with recovery.from "+
					"and keep the load running longer than the hold and two sample intervals past its end (past %s)",
				step, st.At+st.For, from, e.Recovery.Hold, s.Interval, from+e.Recovery.Hold+2*s.Interval)})
		}
	}
	return errs
}
