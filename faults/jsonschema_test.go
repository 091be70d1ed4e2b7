package faults_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// TestParamJSONSchemaAgreesWithCheck writes each value as YAML, as an
// experiment file would, and asks both faults.Check (on the text the
// decoder gives) and a real JSON Schema validator (on the YAML turned into
// JSON, as an editor sees it) whether it is valid: they must agree. Ranges
// of values written as strings ("2h" for a duration of at most 1h) are
// checked by validation only, so the samples keep to the form there.
func TestParamJSONSchemaAgreesWithCheck(t *testing.T) {
	spec := faults.Spec{Name: "sample", Params: []faults.Param{
		{Name: "n", Type: faults.TypeInt, Min: "1", Max: "100", Default: "20"},
		{Name: "x", Type: faults.TypeFloat},
		{Name: "frac", Type: faults.TypeFraction, Min: "0.001"},
		{Name: "on", Type: faults.TypeBool},
		{Name: "d", Type: faults.TypeDuration, Default: "5s"},
		{Name: "dpos", Type: faults.TypeDuration, Min: "1ms"},
		{Name: "size", Type: faults.TypeSize, Min: "1"},
		{Name: "rate", Type: faults.TypeRate, Max: "1000"},
		{Name: "mode", Type: faults.TypeEnum, Enum: []string{"match", "error"}},
		{Name: "code", Type: faults.TypeEnum, Enum: []string{"421", "451"}},
		{Name: "text", Type: faults.TypeString},
		{Name: "to", Type: faults.TypeAddress},
	}}
	samples := map[string][]string{
		"n":    {"50", "1", "100", "0", "101", "-3", `"50"`, `" 7 "`, "5.5", "fifty", "true", `""`},
		"x":    {"0.5", "-2", "1e3", `"3.25"`, "abc", "false"},
		"frac": {"0.2", "0", "1", "1.5", "-0.1", `"30%"`, "30%", "0.0001", `"0.4"`, "half"},
		"on":   {"true", "false", `"true"`, "1", "0", "2", "yes", `"T"`, "maybe"},
		"d":    {"8s", "250ms", "1m30s", "0", `"0"`, "5", "1.5", "-2s", ".5s", "8 s", "fast", "true"},
		"dpos": {"1s", "0"},
		"size": {"4KB", "1MiB", "512", "0", `"4 kb"`, "4KiB", "2.5M", "4KI", "-1", "4XB", "big"},
		"rate": {"250/s", "300", "18000/m", "1/ms", "1/h", "300/", "300/d", "-5", "500", "fast"},
		"mode": {"match", "error", "matches", "1"},
		"code": {"451", `"451"`, "421", "450", "4.5"},
		"text": {"hello", "42", "true", "0.5", `"x y"`},
		"to":   {"smtp", "127.0.0.1:25"},
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(mustJSON(t, spec.ParamsJSONSchema())))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("params.json", doc))
	sch, err := c.Compile("params.json")
	require.NoError(t, err)
	for name, values := range samples {
		for _, v := range values {
			src := []byte(name + ": " + v + "\n")
			var params map[string]string
			ydoc, err := yamlfile.Parse("p.yaml", src)
			require.NoError(t, err)
			require.NoError(t, ydoc.Decode(&params), "%s", src)
			_, errs := faults.Check(spec, params)
			j, err := yaml.YAMLToJSON(src)
			require.NoError(t, err)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			require.NoError(t, err)
			serr := sch.Validate(inst)
			if len(errs) == 0 {
				require.NoError(t, serr, "%s: Check accepts it, the schema must too", src)
			} else {
				require.Error(t, serr, "%s: Check refuses it (%v), the schema must too", src, errs)
			}
		}
	}
	// Unknown and missing required parameters.
	require.Error(t, sch.Validate(map[string]any{"nn": "5"}))
	req := faults.Spec{Name: "r", Params: []faults.Param{{Name: "site", Type: faults.TypeString, Required: true}}}
	require.Equal(t, []any{"site"}, req.ParamsJSONSchema()["required"])
}

// TestParamJSONSchemaDescribes: descriptions and typed defaults.
func TestParamJSONSchemaDescribes(t *testing.T) {
	s := faults.Param{Name: "n", Type: faults.TypeInt, Min: "1", Default: "20", Doc: "sessions", Unit: "sessions"}.JSONSchema()
	require.Equal(t, "sessions (a whole number of at least 1, in sessions)", s["description"])
	require.Equal(t, int64(20), s["default"])
	d := faults.Param{Name: "d", Type: faults.TypeDuration, Default: "5s", Doc: "delay"}.JSONSchema()
	require.Equal(t, "5s", d["default"])
	require.Contains(t, d["description"], "a duration such as 250ms or 8s")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
