package experiments_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
)

// compileSchema compiles the experiment schema with a real JSON Schema
// validator.
func compileSchema(t *testing.T, cat experiments.Catalog, plugins ...string) *jsonschema.Schema {
	t.Helper()
	b, err := experiments.Schema(cat, plugins...)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("mailchaos.schema.json", doc))
	s, err := c.Compile("mailchaos.schema.json")
	require.NoError(t, err)
	return s
}

// yamlAsJSON turns a YAML document into the JSON value an editor checks.
func yamlAsJSON(t *testing.T, data []byte) any {
	t.Helper()
	j, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	require.NoError(t, err)
	return v
}

// TestSchemaAcceptsValidFiles: every catalog file and every valid test
// file is accepted by the schema, the plugin's fault named as a plugin
// found (the real-stack files name a target file that exists only while
// the real stack is up, so only the schema is asked here).
func TestSchemaAcceptsValidFiles(t *testing.T) {
	cat := builtinCatalog(t)
	s := compileSchema(t, cat, "smtp-reply-faults")
	var files []string
	for _, glob := range []string{"catalog/*.yaml", "catalog/*/*.yaml", "testdata/check/*.yaml"} {
		m, err := filepath.Glob(glob)
		require.NoError(t, err)
		files = append(files, m...)
	}
	require.GreaterOrEqual(t, len(files), 10)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, s.Validate(yamlAsJSON(t, data)), f)
	}
}

// TestSchemaRefusesBadParams: what validation refuses in params, the
// schema refuses too, naming the place.
func TestSchemaRefusesBadParams(t *testing.T) {
	cat := builtinCatalog(t)
	s := compileSchema(t, cat)
	base, err := os.ReadFile("catalog/av-latency-remediated.yaml")
	require.NoError(t, err)
	for _, tt := range []struct {
		name, old, new, where string
	}{
		{"wrong type", "concurrency: 50", "concurrency: fifty", "/method/0/params/concurrency"},
		{"number for a duration", "latency: 8s", "latency: 8", "/method/1/params/latency"},
		{"unknown param", "concurrency: 50", "concurency: 50", "/method/0/params"},
		{"bad enum", "mode: match", "mode: matches", "/method/1/params/mode"},
		{"fraction above 1", "infected: 0.2", "infected: 2", "/method/0/params/infected"},
		{"unknown fault", "fault: av-latency", "fault: av-latncy", "/method/1/fault"},
		{"unknown probe param", "metric: mailstack_queue_depth", "metrik: mailstack_queue_depth", "/steady-state/1/params"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, string(base), tt.old)
			data := []byte(strings.Replace(string(base), tt.old, tt.new, 1))
			_, perr := experiments.Parse(context.Background(), "bad.yaml", data, cat)
			require.Error(t, perr, "validation must refuse it too")
			err := s.Validate(yamlAsJSON(t, data))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.where)
		})
	}
}
