package yamlfile

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/internal/suggest"
)

// JSONSchemaer is implemented by types that describe their own JSON
// Schema, typically those that are an [Unmarshaler] or an
// [encoding.TextUnmarshaler] with a grammar of their own. The result is
// copied into the schema; it must be encodable as JSON.
type JSONSchemaer interface {
	JSONSchema() map[string]any
}

// schemaDialect is the JSON Schema version Schema writes.
const schemaDialect = "https://json-schema.org/draft/2020-12/schema"

// DurationPattern is the pattern of the JSON Schema of a time.Duration:
// what time.ParseDuration accepts, such as 500ms, 1m30s or 0.
const DurationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// Schema returns a JSON Schema (draft 2020-12, indented JSON without a
// trailing newline) of the files
// that [Doc.Decode] accepts for a value of type t, for editors to complete
// and check such files. Struct fields are named by their yaml tags as in
// decoding; a struct admits no other property. Named struct types other
// than t are described once under $defs and referred to with $ref, so
// recursive types are fine. The struct tags doc and jsonschema add
// descriptions and constraints (see the package documentation); a type
// implementing [JSONSchemaer] describes itself, and a struct type with
// yaml-tagged fields implementing [encoding.TextUnmarshaler] is one of a
// string and the struct. The schema does not admit null, which decoding accepts (and
// ignores) everywhere. Options refine it where reflection cannot tell
// enough (see [Refine]).
func Schema(t reflect.Type, title string, opts ...SchemaOption) ([]byte, error) {
	if t == nil {
		return nil, errors.New("yamlfile: Schema needs a type")
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	g := &schemaGen{root: t, names: map[reflect.Type]string{}, taken: map[string]bool{}, defs: map[string]any{},
		refine: map[reflect.Type]func(map[string]any) error{}}
	for _, o := range opts {
		o(g)
	}
	var root map[string]any
	var err error
	if t.Kind() == reflect.Struct && g.special(t) == nil {
		root, err = g.structSchema(t, "")
	} else {
		root, err = g.schemaOf(t, "")
	}
	if err != nil {
		return nil, fmt.Errorf("yamlfile: schema of %s: %w", t, err)
	}
	doc := map[string]any{"$schema": schemaDialect}
	if title != "" {
		doc["title"] = title
	}
	for k, v := range root {
		doc[k] = v
	}
	if len(g.defs) > 0 {
		doc["$defs"] = g.defs
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("yamlfile: schema of %s: %w", t, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// schemaGen builds one schema.
type schemaGen struct {
	root  reflect.Type            // described at the top; "#" refers to it
	names map[reflect.Type]string // named struct types -> their name in $defs
	taken map[string]bool         // names used in $defs
	defs  map[string]any
	// refine changes the schema of a struct type once it is built.
	refine map[reflect.Type]func(map[string]any) error
}

// SchemaOption is an option of [Schema].
type SchemaOption func(*schemaGen)

// Refine has fn change the schema of the struct type t once its
// properties are described: what only the caller knows, such as the
// parameters each value of a discriminator field admits (with if/then
// under allOf). fn gets the object schema ("properties" holds a map of
// each field's schema) and may change it in place; its error stops
// [Schema].
func Refine(t reflect.Type, fn func(s map[string]any) error) SchemaOption {
	return func(g *schemaGen) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		g.refine[t] = fn
	}
}

// special returns the schema of a type that is not described by its kind:
// one implementing JSONSchemaer, Unmarshaler or TextUnmarshaler, and
// time.Duration; nil for any other.
func (g *schemaGen) special(t reflect.Type) map[string]any {
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(reflect.TypeFor[JSONSchemaer]()):
		s, _ := deepCopy(reflect.New(t).Interface().(JSONSchemaer).JSONSchema()).(map[string]any)
		if s == nil {
			s = map[string]any{}
		}
		return s
	case t == reflect.TypeFor[time.Duration]():
		return map[string]any{"type": "string", "pattern": DurationPattern}
	case pt.Implements(reflect.TypeFor[Unmarshaler]()):
		return map[string]any{} // anything: the type's own grammar
	case pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()):
		if longForm(t) {
			return nil // a string or the struct: see schemaOf
		}
		return map[string]any{"type": "string"}
	}
	return nil
}

// shortOrLong wraps the schema of a struct type that may also be written
// as a string (see longForm).
func shortOrLong(t reflect.Type, long map[string]any) map[string]any {
	if !longForm(t) {
		return long
	}
	return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, long}}
}

// schemaOf returns a fresh schema of t; where is the field path, for errors.
func (g *schemaGen) schemaOf(t reflect.Type, where string) (map[string]any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s := g.special(t); s != nil {
		return s, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		lim := math.Ldexp(1, t.Bits()-1)
		return map[string]any{"type": "integer", "minimum": -lim, "maximum": lim - 1}, nil
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": math.Ldexp(1, t.Bits()) - 1}, nil
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Slice, reflect.Array:
		items, err := g.schemaOf(t.Elem(), where+"[]")
		if err != nil {
			return nil, err
		}
		s := map[string]any{"type": "array", "items": items}
		if t.Kind() == reflect.Array {
			s["minItems"], s["maxItems"] = t.Len(), t.Len()
		}
		return s, nil
	case reflect.Map:
		values, err := g.schemaOf(t.Elem(), where+".*")
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": values}, nil
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return map[string]any{}, nil
		}
	case reflect.Struct:
		if t.Name() == "" {
			return g.structSchema(t, where)
		}
		if t == g.root {
			return shortOrLong(t, map[string]any{"$ref": "#"}), nil
		}
		name, ok := g.names[t]
		if !ok {
			name = g.defName(t)
			g.names[t] = name
			s, err := g.structSchema(t, where)
			if err != nil {
				return nil, err
			}
			g.defs[name] = s
		}
		return shortOrLong(t, map[string]any{"$ref": "#/$defs/" + name}), nil
	}
	if where == "" {
		return nil, fmt.Errorf("cannot describe Go type %s", t)
	}
	return nil, fmt.Errorf("%s: cannot describe Go type %s", where, t)
}

// defName picks the $defs name of a named type: its name, or its package's
// and its name when another type took that, or a numbered one.
func (g *schemaGen) defName(t reflect.Type) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || r == '.' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
				return r
			}
			return '_'
		}, s)
	}
	name := clean(t.Name())
	if g.taken[name] {
		name = clean(path.Base(t.PkgPath()) + "." + t.Name())
	}
	for i, base := 2, name; g.taken[name]; i++ {
		name = base + strconv.Itoa(i)
	}
	g.taken[name] = true
	return name
}

// structSchema describes a struct: its yaml-tagged fields, nothing else.
func (g *schemaGen) structSchema(t reflect.Type, where string) (map[string]any, error) {
	props := map[string]any{}
	var required []string
	for _, f := range structFields(t).list {
		p := joinPath(where, f.name)
		s, err := g.schemaOf(f.sf.Type, p)
		if err != nil {
			return nil, err
		}
		tag, err := parseSchemaTag(f.sf.Tag.Get("jsonschema"))
		if err == nil {
			err = tag.apply(s)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: jsonschema tag: %w", p, err)
		}
		if doc := f.sf.Tag.Get("doc"); doc != "" {
			s["description"] = doc
		}
		if tag.required {
			required = append(required, f.name)
		}
		props[f.name] = s
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	if fn := g.refine[t]; fn != nil {
		if err := fn(s); err != nil {
			if where == "" {
				return nil, fmt.Errorf("%s: %w", t, err)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return s, nil
}

// schemaTag is a parsed jsonschema struct tag.
type schemaTag struct {
	required         bool
	enum             []string
	pattern          *string
	minimum, maximum *float64
}

// schemaTagOptions are the options of the jsonschema tag.
func schemaTagOptions() []string {
	return []string{"required", "enum", "minimum", "maximum", "pattern"}
}

// parseSchemaTag parses a jsonschema tag: comma-separated options
// required, enum=a|b|c, minimum=N, maximum=N and pattern=RE, which takes
// the rest of the tag (commas included) and so comes last.
func parseSchemaTag(tag string) (schemaTag, error) {
	var st schemaTag
	for tag != "" {
		if re, ok := strings.CutPrefix(tag, "pattern="); ok {
			if _, err := regexp.Compile(re); err != nil {
				return st, fmt.Errorf("pattern %q: %w", re, err)
			}
			st.pattern = &re
			break
		}
		var item string
		item, tag, _ = strings.Cut(tag, ",")
		key, val, hasVal := strings.Cut(item, "=")
		switch key {
		case "":
		case "required":
			if hasVal {
				return st, fmt.Errorf("required takes no value, got %q", item)
			}
			st.required = true
		case "enum":
			if val == "" {
				return st, errors.New("enum needs values, such as enum=a|b")
			}
			st.enum = strings.Split(val, "|")
		case "minimum", "maximum":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return st, fmt.Errorf("%s=%q is not a number", key, val)
			}
			if key == "minimum" {
				st.minimum = &f
			} else {
				st.maximum = &f
			}
		default:
			return st, fmt.Errorf("unknown option %q; valid options: %s%s",
				key, strings.Join(schemaTagOptions(), ", "), suggest.Hint(key, schemaTagOptions()))
		}
	}
	return st, nil
}

// apply adds the constraints to s: to the value itself, or to the items
// of a list or the values of a map (of a list of lists, and so on).
func (st schemaTag) apply(s map[string]any) error {
	if st.enum == nil && st.pattern == nil && st.minimum == nil && st.maximum == nil {
		return nil
	}
	for {
		inner, ok := map[string]any(nil), false
		switch s["type"] {
		case "array":
			inner, ok = s["items"].(map[string]any)
		case "object":
			inner, ok = s["additionalProperties"].(map[string]any)
		}
		if !ok {
			break
		}
		s = inner
	}
	typ, _ := s["type"].(string)
	if st.enum != nil {
		values := make([]any, len(st.enum))
		for i, e := range st.enum {
			var v any
			var err error
			switch typ {
			case "string":
				v = e
			case "integer":
				v, err = strconv.ParseInt(e, 10, 64)
			case "number":
				v, err = strconv.ParseFloat(e, 64)
			case "boolean":
				v, err = strconv.ParseBool(e)
			default:
				return errors.New("enum applies to strings, numbers and booleans")
			}
			if err != nil {
				return fmt.Errorf("enum value %q is not of type %s", e, typ)
			}
			values[i] = v
		}
		s["enum"] = values
	}
	if st.pattern != nil {
		if typ != "string" {
			return errors.New("pattern applies to strings")
		}
		if _, has := s["pattern"]; has {
			return errors.New("pattern on a value that has a pattern of its own")
		}
		s["pattern"] = *st.pattern
	}
	for _, b := range []struct {
		key string
		lim *float64
	}{{"minimum", st.minimum}, {"maximum", st.maximum}} {
		if b.lim == nil {
			continue
		}
		if typ != "integer" && typ != "number" {
			return fmt.Errorf("%s applies to numbers", b.key)
		}
		s[b.key] = *b.lim
	}
	return nil
}

// deepCopy copies the maps and slices of a JSON-like value.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
