package faults

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/internal/suggest"
)

// Spec describes an injector.
type Spec struct {
	// Name is how experiment files and the command line call it.
	Name string `json:"name"`
	// Summary is one line saying what it does.
	Summary string `json:"summary"`
	// NeedsLink is true for faults that sit on links (network faults).
	NeedsLink bool `json:"needs_link"`
	// Params is the parameter schema.
	Params []Param `json:"params"`
	// Toxics are the toxic types the fault may add on a toxiproxy server,
	// whatever its parameters; empty for a fault that adds none. A server
	// that lacks one (stock toxiproxy lacks mailchaos' own) cannot carry
	// the fault. An injector may say which of them one request needs
	// (experiments looks for a ToxicsFor method).
	Toxics []string `json:"toxics,omitempty"`
}

// ToxicsFor returns the toxic types a request with params p needs, sorted:
// those of s.Toxics that no parameter's [Param.Toxics] names, and those the
// chosen value of each such parameter (or its default) names. A fault whose
// parameters say nothing of toxics needs all of s.Toxics.
func (s Spec) ToxicsFor(p Params) []string {
	chosen := map[string]bool{}
	decided := map[string]bool{}
	for _, prm := range s.Params {
		if len(prm.Toxics) == 0 {
			continue
		}
		for _, ts := range prm.Toxics {
			for _, t := range ts {
				decided[t] = true
			}
		}
		v, ok := p[prm.Name]
		if !ok {
			v = prm.Default
		}
		for _, t := range prm.Toxics[v] {
			chosen[t] = true
		}
	}
	for _, t := range s.Toxics {
		if !decided[t] {
			chosen[t] = true
		}
	}
	out := make([]string, 0, len(chosen))
	for t := range chosen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Param returns the named parameter's schema.
func (s Spec) Param(name string) (Param, bool) {
	for _, p := range s.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// ParamNames lists the parameter names.
func (s Spec) ParamNames() []string {
	names := make([]string, len(s.Params))
	for i, p := range s.Params {
		names[i] = p.Name
	}
	return names
}

// Type is the type of a parameter's value.
type Type string

// Parameter types. Every value travels as a string; the type says how it
// is parsed.
const (
	// TypeString is any text.
	TypeString Type = "string"
	// TypeInt is a whole number.
	TypeInt Type = "int"
	// TypeFloat is a number.
	TypeFloat Type = "float"
	// TypeFraction is a number from 0 to 1, or a percentage ("30%").
	TypeFraction Type = "fraction"
	// TypeBool is true or false.
	TypeBool Type = "bool"
	// TypeDuration is a Go duration ("250ms", "8s").
	TypeDuration Type = "duration"
	// TypeSize is a byte count with an optional unit ("4KB", "1MiB", "512").
	TypeSize Type = "size"
	// TypeRate is events per second ("300", "300/s", "18000/m").
	TypeRate Type = "rate"
	// TypeEnum is one of Param.Enum.
	TypeEnum Type = "enum"
)

// Param is one parameter in a schema.
type Param struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	// Unit is the unit of a number, for documentation ("ms", "bytes/s").
	Unit string `json:"unit,omitempty"`
	// Default is the value used when the parameter is not given ("" means
	// none: the parameter is then optional unless Required).
	Default string `json:"default,omitempty"`
	// Required parameters must be given.
	Required bool `json:"required,omitempty"`
	// Min and Max bound numbers, durations, sizes and rates (inclusive),
	// written like values; "" means unbounded.
	Min string `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
	// Enum lists the valid values of a TypeEnum parameter.
	Enum []string `json:"enum,omitempty"`
	// Doc says what the parameter does.
	Doc string `json:"doc"`
	// Toxics, for a TypeEnum parameter that decides which toxics the
	// fault adds, are the toxic types (out of [Spec.Toxics]) each value
	// makes it add. See [Spec.ToxicsFor].
	Toxics map[string][]string `json:"toxics,omitempty"`
}

// Params are parameter values by name, as written by the user.
type Params map[string]string

// ParamError is an invalid parameter. It names the parameter and what is
// allowed.
type ParamError struct {
	Fault   string
	Param   string
	Value   string
	Msg     string
	Allowed string // what would be valid, for the user
}

func (e *ParamError) Error() string {
	s := fmt.Sprintf("%s: parameter %s", e.Fault, e.Param)
	if e.Value != "" {
		s += fmt.Sprintf(" = %q", e.Value)
	}
	s += ": " + e.Msg
	if e.Allowed != "" {
		s += " (" + e.Allowed + ")"
	}
	return s
}

// InvalidInput marks the error as the user's input being wrong (exit 2).
func (e *ParamError) InvalidInput() bool { return true }

// Values is a validated set of parameters with typed accessors. Accessors
// fall back to the schema default; they must only be asked for parameters
// the schema declares.
type Values struct {
	spec   Spec
	params Params
}

// Check validates params against spec: unknown names (with the nearest
// valid one suggested), missing required ones, types, ranges and enums.
// Every problem is returned, first by parameter order in the schema.
func Check(spec Spec, params Params) (Values, []error) {
	var errs []error
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := spec.Param(n); !ok {
			errs = append(errs, &ParamError{Fault: spec.Name, Param: n, Msg: "unknown parameter" + Suggest(n, spec.ParamNames()),
				Allowed: "valid: " + strings.Join(spec.ParamNames(), ", ")})
		}
	}
	for _, p := range spec.Params {
		v, ok := params[p.Name]
		if !ok {
			if p.Required {
				errs = append(errs, &ParamError{Fault: spec.Name, Param: p.Name, Msg: "is required", Allowed: describe(p)})
			}
			continue
		}
		if err := checkValue(p, v); err != nil {
			errs = append(errs, &ParamError{Fault: spec.Name, Param: p.Name, Value: v, Msg: err.Error(), Allowed: describe(p)})
		}
	}
	return Values{spec: spec, params: params}, errs
}

// describe says in words what values p takes.
func describe(p Param) string {
	var s string
	switch p.Type {
	case TypeEnum:
		return "one of " + strings.Join(p.Enum, ", ")
	case TypeDuration:
		s = "a duration such as 250ms or 8s"
	case TypeSize:
		s = "a size such as 512, 4KB or 1MiB"
	case TypeRate:
		s = "a rate such as 300/s or 1000/m"
	case TypeFraction:
		s = "a fraction from 0 to 1, or a percentage such as 30%"
	case TypeBool:
		return "true or false"
	case TypeAddress:
		return "a name in the target's endpoints, a host:port or an http(s) URL, on loopback"
	case TypeInt:
		s = "a whole number"
	case TypeFloat:
		s = "a number"
	default:
		return ""
	}
	switch {
	case p.Min != "" && p.Max != "":
		s += fmt.Sprintf(" from %s to %s", p.Min, p.Max)
	case p.Min != "":
		s += " of at least " + p.Min
	case p.Max != "":
		s += " of at most " + p.Max
	}
	return s
}

// checkValue parses v as p's type and checks its range.
func checkValue(p Param, v string) error {
	if p.Type == TypeEnum {
		for _, e := range p.Enum {
			if v == e {
				return nil
			}
		}
		return fmt.Errorf("not a valid choice%s", Suggest(v, p.Enum))
	}
	if p.Type == TypeString {
		return nil
	}
	if p.Type == TypeAddress {
		return checkAddressFormat(v)
	}
	if p.Type == TypeBool {
		_, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not true or false")
		}
		return nil
	}
	x, err := ParseNumber(p.Type, v)
	if err != nil {
		return err
	}
	if p.Min != "" {
		if lo, err := ParseNumber(p.Type, p.Min); err == nil && x < lo {
			return fmt.Errorf("below the minimum %s", p.Min)
		}
	}
	if p.Max != "" {
		if hi, err := ParseNumber(p.Type, p.Max); err == nil && x > hi {
			return fmt.Errorf("above the maximum %s", p.Max)
		}
	}
	return nil
}

// ParseNumber parses a numeric parameter value to a float64 in the type's
// base unit: nanoseconds for durations, bytes for sizes, events per second
// for rates.
func ParseNumber(t Type, v string) (float64, error) {
	v = strings.TrimSpace(v)
	switch t {
	case TypeInt:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("not a whole number")
		}
		return float64(n), nil
	case TypeFloat:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("not a number")
		}
		return f, nil
	case TypeFraction:
		return ParseFraction(v)
	case TypeDuration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("not a duration")
		}
		return float64(d), nil
	case TypeSize:
		n, err := ParseSize(v)
		return float64(n), err
	case TypeRate:
		return ParseRate(v)
	}
	return 0, fmt.Errorf("type %s is not numeric", t)
}

// ParseFraction parses "0.3" or "30%".
func ParseFraction(v string) (float64, error) {
	v = strings.TrimSpace(v)
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("not a fraction")
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return 0, fmt.Errorf("not between 0 and 1")
	}
	return f, nil
}

// ParseSize parses a byte count: "512", "4KB" (4000), "4KiB" (4096), "1MB",
// "1MiB", "1GB", "1GiB"; "B" is optional and case does not matter.
func ParseSize(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("not a size")
	}
	return int64(f * float64(mult)), nil
}

// ParseRate parses events per second: "300", "300/s", "18000/m", "5/ms".
func ParseRate(v string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(v), "/")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a rate")
	}
	switch strings.TrimSpace(unit) {
	case "", "s", "sec":
		return f, nil
	case "m", "min":
		return f / 60, nil
	case "h":
		return f / 3600, nil
	case "ms":
		return f * 1000, nil
	}
	return 0, fmt.Errorf("not a rate: unit must be /s, /m, /h or /ms")
}

// raw returns the value of name, or its default.
func (v Values) raw(name string) string {
	if s, ok := v.params[name]; ok {
		return s
	}
	p, _ := v.spec.Param(name)
	return p.Default
}

// Has reports whether the parameter was given or has a default.
func (v Values) Has(name string) bool { return v.raw(name) != "" }

// String returns a parameter's text.
func (v Values) String(name string) string { return v.raw(name) }

// Int returns a TypeInt parameter (0 when unset).
func (v Values) Int(name string) int {
	f, _ := ParseNumber(TypeInt, v.raw(name))
	return int(f)
}

// Float returns a TypeFloat or TypeFraction parameter (0 when unset).
func (v Values) Float(name string) float64 {
	p, _ := v.spec.Param(name)
	f, _ := ParseNumber(p.Type, v.raw(name))
	return f
}

// Bool returns a TypeBool parameter (false when unset).
func (v Values) Bool(name string) bool {
	b, _ := strconv.ParseBool(v.raw(name))
	return b
}

// Duration returns a TypeDuration parameter (0 when unset).
func (v Values) Duration(name string) time.Duration {
	f, _ := ParseNumber(TypeDuration, v.raw(name))
	return time.Duration(f)
}

// Size returns a TypeSize parameter in bytes (0 when unset).
func (v Values) Size(name string) int64 {
	n, _ := ParseSize(v.raw(name))
	return n
}

// Rate returns a TypeRate parameter in events per second (0 when unset).
func (v Values) Rate(name string) float64 {
	f, _ := ParseRate(v.raw(name))
	return f
}

// Suggest returns `; did you mean "x"?` for the valid name closest to got,
// or "" when none is close.
func Suggest(got string, valid []string) string { return suggest.Hint(got, valid) }

// Flatten splits an errors.Join tree into its leaves: a validation error
// into one error per problem. nil gives none.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
