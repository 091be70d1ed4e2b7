package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Registry maps fault names to injectors. It is built once by the command
// line and handed down; it is not safe to Add concurrently with lookups.
type Registry struct {
	byName  map[string]Injector
	specs   map[string]Spec
	refused map[string]error
	// asked holds the refused faults Get was asked for.
	asked sync.Map
	// Hint, if set, is added to the error for an unknown fault (where
	// plugins are looked for, say).
	Hint string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]Injector{}, specs: map[string]Spec{}, refused: map[string]error{}}
}

// Refuse records a fault that exists but may not be used (its plugin
// could not start, or differs from plugins.lock): Get returns err for it.
// Faults that are not used are not affected.
func (r *Registry) Refuse(name string, err error) {
	r.refused[name] = err
}

// Add registers inj under the name its Describe returns. A second injector
// with the same name is an error.
func (r *Registry) Add(ctx context.Context, inj Injector) error {
	spec, err := inj.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe injector: %w", err)
	}
	if spec.Name == "" {
		return fmt.Errorf("injector %T describes itself with no name", inj)
	}
	if _, dup := r.byName[spec.Name]; dup {
		return fmt.Errorf("fault %q is registered twice", spec.Name)
	}
	r.byName[spec.Name] = inj
	r.specs[spec.Name] = spec
	return nil
}

// UnknownFaultError is a fault name no injector has.
type UnknownFaultError struct {
	Name  string
	Known []string
	Hint  string
}

func (e *UnknownFaultError) Error() string {
	msg := fmt.Sprintf("unknown fault %q%s (known: %s)", e.Name, Suggest(e.Name, e.Known), strings.Join(e.Known, ", "))
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// InvalidInput marks the error as the user's input being wrong (exit 2).
func (e *UnknownFaultError) InvalidInput() bool { return true }

// Get returns the injector and spec of a fault, or an [*UnknownFaultError].
func (r *Registry) Get(name string) (Injector, Spec, error) {
	inj, ok := r.byName[name]
	if err, refused := r.refused[name]; refused && !ok {
		r.asked.Store(name, true)
		return nil, Spec{}, err
	}
	if !ok {
		return nil, Spec{}, &UnknownFaultError{Name: name, Known: r.Names(), Hint: r.Hint}
	}
	return inj, r.specs[name], nil
}

// Asked reports whether Get was asked for the refused fault name, and so
// returned why it is refused to a caller. Safe to call concurrently with
// Get.
func (r *Registry) Asked(name string) bool {
	_, ok := r.asked.Load(name)
	return ok
}

// Names lists the registered faults, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Specs lists every registered fault's spec, sorted by name.
func (r *Registry) Specs() []Spec {
	out := make([]Spec, 0, len(r.specs))
	for _, n := range r.Names() {
		out = append(out, r.specs[n])
	}
	return out
}
