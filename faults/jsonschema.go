package faults

import (
	"strconv"
	"strings"
)

// Patterns of the JSON Schema of parameter values written as strings: what
// [Check] accepts (surrounding blanks included, as it trims them). They
// use only what every JSON Schema regular expression engine knows (no
// flags), so editors check them as mailchaos does.
const (
	unsignedPattern = `\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?`
	numberPattern   = `[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?`
	intPattern      = `^\s*[-+]?[0-9]+\s*$`
	floatPattern    = `^\s*` + numberPattern + `\s*$`
	fractionPattern = `^\s*` + numberPattern + `%?\s*$`
	durationPattern = `^\s*[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)\s*$`
	sizePattern     = `^\s*` + unsignedPattern + `\s*([kKmMgG]([iI]?[bB])?|[bB])?\s*$`
	ratePattern     = `^\s*` + unsignedPattern + `\s*(/\s*(s|sec|m|min|h|ms)?\s*)?$`
)

// boolTexts are the strings strconv.ParseBool accepts.
func boolTexts() []any {
	return []any{"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
}

// JSONSchema describes the values of the parameter in an experiment file
// turned into JSON: a YAML scalar arrives as a string, a number or a
// boolean, and the schema admits each form [Check] accepts (numbers where
// a number's text parses: 50 for an int, 0.2 for a fraction, 4096 for a
// size, 300 for a rate, 0 for a duration; strings such as "8s", "4KB",
// "250/s", "30%"). Ranges bound the numbers; strings are checked by form
// only, their range by validation. It has a description (the doc, what
// values are valid, the unit) and the default.
func (p Param) JSONSchema() map[string]any {
	s := map[string]any{}
	numeric := func(typ string) map[string]any {
		n := map[string]any{"type": typ}
		for _, b := range []struct{ key, lim string }{{"minimum", p.Min}, {"maximum", p.Max}} {
			if b.lim == "" {
				continue
			}
			if v, err := ParseNumber(p.Type, b.lim); err == nil {
				n[b.key] = v
			}
		}
		switch p.Type {
		case TypeFraction:
			n["minimum"] = max(numberOr(n["minimum"], 0), 0)
			n["maximum"] = min(numberOr(n["maximum"], 1), 1)
		case TypeSize, TypeRate:
			n["minimum"] = max(numberOr(n["minimum"], 0), 0)
		}
		return n
	}
	text := func(pattern string) map[string]any {
		return map[string]any{"type": "string", "pattern": pattern}
	}
	switch p.Type {
	case TypeInt:
		s["anyOf"] = []any{numeric("integer"), text(intPattern)}
	case TypeFloat:
		s["anyOf"] = []any{numeric("number"), text(floatPattern)}
	case TypeFraction:
		s["anyOf"] = []any{numeric("number"), text(fractionPattern)}
	case TypeSize:
		s["anyOf"] = []any{numeric("number"), text(sizePattern)}
	case TypeRate:
		s["anyOf"] = []any{numeric("number"), text(ratePattern)}
	case TypeDuration:
		forms := []any{text(durationPattern)}
		if checkValue(p, "0") == nil {
			forms = append(forms, map[string]any{"const": 0})
		}
		s["anyOf"] = forms
	case TypeBool:
		s["anyOf"] = []any{map[string]any{"type": "boolean"}, map[string]any{"enum": append(boolTexts(), 0, 1)}}
	case TypeEnum:
		var values []any
		for _, e := range p.Enum {
			values = append(values, e)
			if v, ok := scalarValue(e); ok {
				values = append(values, v)
			}
		}
		s["enum"] = values
	case TypeAddress:
		s["type"] = "string"
	default: // TypeString, and types of plugins this version does not know
		s["type"] = []any{"string", "number", "boolean"}
	}
	desc := p.Doc
	if d := describe(p); d != "" {
		desc += " (" + d
		if p.Unit != "" {
			desc += ", in " + p.Unit
		}
		desc += ")"
	}
	if desc = strings.TrimSpace(desc); desc != "" {
		s["description"] = desc
	}
	if p.Default != "" {
		s["default"] = p.jsonDefault()
	}
	return s
}

// numberOr returns v as a float64, or def when it is none.
func numberOr(v any, def float64) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return def
}

// jsonDefault is the default as an editor would insert it: a number or a
// boolean where one is valid, else the text.
func (p Param) jsonDefault() any {
	switch p.Type {
	case TypeInt, TypeFloat, TypeFraction, TypeSize, TypeRate, TypeBool:
		if v, ok := scalarValue(p.Default); ok {
			return v
		}
	}
	return p.Default
}

// scalarValue is the number or boolean a YAML scalar written as text
// would be read as, if it is one.
func scalarValue(text string) (any, bool) {
	if text == "true" || text == "false" {
		return text == "true", true
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil && strings.ContainsAny(text, "0123456789") &&
		!strings.ContainsAny(text, "xXpP_") {
		return f, true
	}
	return nil, false
}

// ParamsJSONSchema describes the params mapping of a request for the
// fault (or probe): its parameters, each by [Param.JSONSchema], the
// required ones, and no other.
func (s Spec) ParamsJSONSchema() map[string]any {
	props := map[string]any{}
	var required []any
	for _, p := range s.Params {
		props[p.Name] = p.JSONSchema()
		if p.Required {
			required = append(required, p.Name)
		}
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}
