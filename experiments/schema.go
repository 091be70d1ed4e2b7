package experiments

import (
	"errors"
	"reflect"
	"slices"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// Schema returns the JSON Schema of experiment files (for editors): the
// fields by reflection ([yamlfile.Schema]), and each method step's params
// and each SLI's params by the schema of the fault or probe it names, from
// the catalog's specs, the same that validation checks them with. A step
// may name only a fault of the catalog or of plugins, and an SLI only one
// of the catalog's probes. plugins are the names of fault plugins found
// but not started (their specs are not known): a step may name one, with
// any params, which validate checks.
func Schema(cat Catalog, plugins ...string) ([]byte, error) {
	if cat.Faults == nil || cat.Probes == nil {
		return nil, errors.New("experiments: Schema needs the catalog's faults and probes")
	}
	var probeSpecs []faults.Spec
	for _, name := range cat.Probes.Names() {
		k, err := cat.Probes.Get(name)
		if err != nil {
			return nil, err
		}
		probeSpecs = append(probeSpecs, k.Spec())
	}
	return yamlfile.Schema(reflect.TypeFor[Experiment](), "mailchaos experiment",
		yamlfile.Refine(reflect.TypeFor[Step](), byName("fault", cat.Faults.Specs(), plugins)),
		yamlfile.Refine(reflect.TypeFor[SLI](), byName("probe", probeSpecs, nil)))
}

// byName refines the schema of an object whose field key names one of
// specs or of opaque: key takes only those names, and params only that
// spec's parameters (an if/then for each under allOf); an opaque name's
// params are any scalars.
func byName(key string, specs []faults.Spec, opaque []string) func(map[string]any) error {
	return func(s map[string]any) error {
		props, _ := s["properties"].(map[string]any)
		field, _ := props[key].(map[string]any)
		if field == nil {
			return errors.New("no field " + key)
		}
		names := make([]any, len(specs))
		var cases []any
		for i, spec := range specs {
			names[i] = spec.Name
			params := spec.ParamsJSONSchema()
			params["description"] = "parameters of " + spec.Name + ": " + spec.Summary
			then := map[string]any{"properties": map[string]any{"params": params}}
			if req, _ := params["required"].([]any); len(req) > 0 {
				then["required"] = []any{"params"}
			}
			cases = append(cases, map[string]any{
				"if":   map[string]any{"properties": map[string]any{key: map[string]any{"const": spec.Name}}, "required": []any{key}},
				"then": then,
			})
		}
		for _, n := range opaque {
			if !slices.Contains(names, any(n)) {
				names = append(names, n)
			}
		}
		field["enum"] = names
		// A YAML scalar is a string, a number or a boolean once in JSON;
		// each is decoded as its text. The spec of the one named says
		// which it takes.
		params, _ := props["params"].(map[string]any)
		if params == nil {
			return errors.New("no field params")
		}
		params["additionalProperties"] = map[string]any{"type": []any{"string", "number", "boolean"}}
		if len(cases) > 0 {
			s["allOf"] = cases
		}
		return nil
	}
}
