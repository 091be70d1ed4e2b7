package yamlfile_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// schemaOf generates the schema of T and decodes it for inspection.
func schemaOf[T any](t *testing.T) map[string]any {
	t.Helper()
	data, err := yamlfile.Schema(reflect.TypeFor[T](), "Sample")
	require.NoError(t, err)
	var s map[string]any
	require.NoError(t, json.Unmarshal(data, &s))
	return s
}

// at walks a decoded schema by keys.
func at(t *testing.T, s any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := s.(map[string]any)
		require.True(t, ok, "at %q: %v is not an object", k, s)
		s, ok = m[k]
		require.True(t, ok, "no %q in %v", k, m)
	}
	return s
}

func TestSchema(t *testing.T) {
	s := schemaOf[sample](t)
	require.Equal(t, "https://json-schema.org/draft/2020-12/schema", s["$schema"])
	require.Equal(t, "Sample", s["title"])
	require.Equal(t, "object", s["type"])
	require.Equal(t, false, s["additionalProperties"])
	require.Equal(t, []any{"title"}, s["required"])

	props := at(t, s, "properties").(map[string]any)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	require.ElementsMatch(t, []string{"title", "workers", "small", "count", "ratio", "ratio32", "enabled",
		"timeout", "mode", "tags", "endpoints", "ports", "engines", "steady-state", "limit", "extra", "rate",
		"threshold", "addr", "pair", "next", "owner"}, names, "yaml names, inline fields, no untagged or skipped ones")

	require.Equal(t, map[string]any{"type": "string", "description": "What the file is for."}, props["title"])
	require.Equal(t, map[string]any{"type": "integer", "minimum": 1.0, "maximum": 64.0}, props["workers"])
	require.Equal(t, map[string]any{"type": "integer", "minimum": -128.0, "maximum": 127.0}, props["small"])
	require.Equal(t, map[string]any{"type": "integer", "minimum": 0.0, "maximum": 65535.0}, props["count"])
	require.Equal(t, map[string]any{"type": "number"}, props["ratio"])
	require.Equal(t, map[string]any{"type": "boolean"}, props["enabled"])
	require.Equal(t, map[string]any{"type": "string", "pattern": yamlfile.DurationPattern}, props["timeout"])
	require.Equal(t, map[string]any{"type": "string", "enum": []any{"fast", "slow"}}, props["mode"])
	require.Equal(t, map[string]any{"type": "array", "items": map[string]any{"type": "string", "pattern": "^[a-z]+(,[a-z]+)?$"}}, props["tags"],
		"a constraint on a list applies to its items; a pattern keeps its commas")
	require.Equal(t, map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}, props["endpoints"])
	require.Equal(t, map[string]any{"type": "integer"}, props["limit"], "a pointer is its element")
	require.Equal(t, map[string]any{}, props["extra"])
	require.Equal(t, map[string]any{"type": "string", "pattern": "^[0-9]+/[sm]$"}, props["rate"], "JSONSchemaer")
	require.Equal(t, map[string]any{}, props["threshold"], "an Unmarshaler without JSONSchema admits anything")
	require.Equal(t, map[string]any{"type": "string"}, props["addr"], "TextUnmarshaler")
	require.Equal(t, map[string]any{"type": "array", "items": map[string]any{"type": "integer"}, "minItems": 2.0, "maxItems": 2.0}, props["pair"])
	require.Equal(t, map[string]any{"$ref": "#"}, props["next"], "the root type refers to itself")

	// Named structs are described once, in $defs.
	require.Equal(t, map[string]any{"$ref": "#/$defs/engine"}, at(t, props, "engines", "items"))
	require.Equal(t, map[string]any{"$ref": "#/$defs/probe"}, at(t, props, "steady-state", "items"))
	defs := at(t, s, "$defs").(map[string]any)
	require.Len(t, defs, 3)
	require.Equal(t, []any{"name"}, at(t, defs, "engine", "required"))
	require.Equal(t, false, at(t, defs, "engine", "additionalProperties"))
	require.Equal(t, map[string]any{"type": "integer", "minimum": 0.0, "maximum": 255.0}, at(t, defs, "engine", "properties", "weight"))
	require.Equal(t, map[string]any{"$ref": "#/$defs/tolerance"}, at(t, defs, "probe", "properties", "tolerance"))
	require.Equal(t, map[string]any{"type": "integer"}, at(t, defs, "tolerance", "properties", "max"))
}

func TestDurationPattern(t *testing.T) {
	re := regexp.MustCompile(yamlfile.DurationPattern)
	for _, s := range []string{"0", "500ms", "1m30s", "1.5h", ".5s", "-2s", "+3us", "4µs", "4μs", "1h2m3s4ms5us6ns", "7.s"} {
		_, err := time.ParseDuration(s)
		require.NoError(t, err, s)
		require.True(t, re.MatchString(s), s)
	}
	for _, s := range []string{"", "5", "s", ".s", "1d", "fast", "1 s", "1s ", "--1s"} {
		require.False(t, re.MatchString(s), s)
	}
}

type node struct {
	Name     string  `yaml:"name"`
	Children []*node `yaml:"children"`
}

type tree struct {
	Root node `yaml:"root"`
}

func TestSchemaRecursiveAndNamed(t *testing.T) {
	s := schemaOf[tree](t)
	require.Equal(t, map[string]any{"$ref": "#/$defs/node"}, at(t, s, "properties", "root"))
	require.Equal(t, map[string]any{"$ref": "#/$defs/node"}, at(t, s, "$defs", "node", "properties", "children", "items"))

	s = schemaOf[map[string][]int](t)
	require.Equal(t, "object", s["type"])
	require.Equal(t, map[string]any{"type": "array", "items": map[string]any{"type": "integer"}}, s["additionalProperties"])
}

func TestSchemaTagErrors(t *testing.T) {
	for _, tt := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[struct {
			A int `yaml:"a" jsonschema:"requird"`
		}](), `a: jsonschema tag: unknown option "requird"; valid options: required, enum, minimum, maximum, pattern; did you mean "required"?`},
		{reflect.TypeFor[struct {
			A int `yaml:"a" jsonschema:"minimum=x"`
		}](), `a: jsonschema tag: minimum="x" is not a number`},
		{reflect.TypeFor[struct {
			A int `yaml:"a" jsonschema:"enum=1|two"`
		}](), `a: jsonschema tag: enum value "two" is not of type integer`},
		{reflect.TypeFor[struct {
			A string `yaml:"a" jsonschema:"minimum=1"`
		}](), `a: jsonschema tag: minimum applies to numbers`},
		{reflect.TypeFor[struct {
			A int `yaml:"a" jsonschema:"pattern=x"`
		}](), `a: jsonschema tag: pattern applies to strings`},
		{reflect.TypeFor[struct {
			A string `yaml:"a" jsonschema:"pattern=("`
		}](), "a: jsonschema tag: pattern \"(\": error parsing regexp: missing closing ): `(`"},
		{reflect.TypeFor[struct {
			A time.Duration `yaml:"a" jsonschema:"pattern=x"`
		}](), `a: jsonschema tag: pattern on a value that has a pattern of its own`},
		{reflect.TypeFor[struct {
			A engine `yaml:"a" jsonschema:"enum=x"`
		}](), `a: jsonschema tag: enum applies to strings, numbers and booleans`},
		{reflect.TypeFor[struct {
			A []chan int `yaml:"a"`
		}](), `a[]: cannot describe Go type chan int`},
	} {
		_, err := yamlfile.Schema(tt.typ, "")
		require.EqualError(t, err, fmt.Sprintf("yamlfile: schema of %s: %s", tt.typ, tt.want))
	}
}

func ExampleSchema() {
	type Probe struct {
		Name    string        `yaml:"name" jsonschema:"required" doc:"Shown in reports."`
		Every   time.Duration `yaml:"every"`
		Retries int           `yaml:"retries" jsonschema:"minimum=0,maximum=5"`
	}
	data, err := yamlfile.Schema(reflect.TypeFor[Probe](), "Probe")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(data))
	// Output:
	// {
	//   "$schema": "https://json-schema.org/draft/2020-12/schema",
	//   "additionalProperties": false,
	//   "properties": {
	//     "every": {
	//       "pattern": "^[-+]?(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$",
	//       "type": "string"
	//     },
	//     "name": {
	//       "description": "Shown in reports.",
	//       "type": "string"
	//     },
	//     "retries": {
	//       "maximum": 5,
	//       "minimum": 0,
	//       "type": "integer"
	//     }
	//   },
	//   "required": [
	//     "name"
	//   ],
	//   "title": "Probe",
	//   "type": "object"
	// }
}

func TestSchemaNameClash(t *testing.T) {
	type engine struct {
		Other string `yaml:"other"`
	}
	type both struct {
		A sample `yaml:"a"` // its engine first
		B engine `yaml:"b"`
	}
	s := schemaOf[both](t)
	require.Equal(t, map[string]any{"$ref": "#/$defs/yamlfile_test.engine"}, at(t, s, "properties", "b"))
	require.Equal(t, map[string]any{"type": "string"}, at(t, s, "$defs", "yamlfile_test.engine", "properties", "other"))
	require.Equal(t, map[string]any{"$ref": "#/$defs/engine"}, at(t, s, "$defs", "sample", "properties", "engines", "items"))
	require.Equal(t, map[string]any{"$ref": "#/$defs/sample"}, at(t, s, "$defs", "sample", "properties", "next"))
}

// TestSchemaRefine: Refine changes a struct type's schema, wherever the
// type is described (here under $defs and at the top), and its error
// stops Schema, naming the field.
func TestSchemaRefine(t *testing.T) {
	mark := yamlfile.Refine(reflect.TypeFor[node](), func(s map[string]any) error {
		s["allOf"] = []any{map[string]any{"required": []any{"name"}}}
		return nil
	})
	data, err := yamlfile.Schema(reflect.TypeFor[tree](), "", mark)
	require.NoError(t, err)
	var s map[string]any
	require.NoError(t, json.Unmarshal(data, &s))
	require.Equal(t, []any{map[string]any{"required": []any{"name"}}}, at(t, s, "$defs", "node", "allOf"))
	_, has := s["allOf"]
	require.False(t, has, "only the refined type changes")

	data, err = yamlfile.Schema(reflect.TypeFor[node](), "", mark)
	require.NoError(t, err)
	require.Contains(t, string(data), `"allOf"`)

	_, err = yamlfile.Schema(reflect.TypeFor[tree](), "", yamlfile.Refine(reflect.TypeFor[*node](), func(map[string]any) error {
		return fmt.Errorf("no such field")
	}))
	require.ErrorContains(t, err, "root: no such field")
}
