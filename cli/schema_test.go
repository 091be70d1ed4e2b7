package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// TestSchemaAcceptsTheCatalog: what mailchaos schema prints, with the
// example plugin found where validate finds it, accepts every catalog file
// (YAML turned into JSON, checked by a real JSON Schema validator), and
// refuses a misspelt fault and a built-in's parameter of the wrong kind.
func TestSchemaAcceptsTheCatalog(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t, "smtp-reply-faults", "../plugins/examples/smtp-reply-faults")
	code, out, errb := runIn(t, dir, "--log-level", "warn", "schema")
	require.Equal(t, cli.ExitOK, code, errb)
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("mailchaos.schema.json", doc))
	sch, err := c.Compile("mailchaos.schema.json")
	require.NoError(t, err)

	files, err := filepath.Glob("../experiments/catalog/*.yaml")
	require.NoError(t, err)
	more, err := filepath.Glob("../experiments/catalog/*/*.yaml")
	require.NoError(t, err)
	files = append(files, more...)
	require.GreaterOrEqual(t, len(files), 10)
	asJSON := func(data []byte) any {
		j, err := yaml.YAMLToJSON(data)
		require.NoError(t, err)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		require.NoError(t, err)
		return v
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, sch.Validate(asJSON(data)), f)
	}

	// The plugin is named, not started: its params are left to
	// validate, but a name no plugin has is refused.
	data, err := os.ReadFile("../experiments/catalog/smtp-ingress-tempfail.yaml")
	require.NoError(t, err)
	src := strings.Replace(string(data), "fault: smtp-reply-faults", "fault: smtp-reply-fault", 1)
	require.NotEqual(t, string(data), src)
	err = sch.Validate(asJSON([]byte(src)))
	require.Error(t, err)
	require.Contains(t, err.Error(), "/method/1/fault")
	// A built-in fault's params are typed.
	src = strings.Replace(string(data), "concurrency: 20", "concurrency: many", 1)
	require.NotEqual(t, string(data), src)
	err = sch.Validate(asJSON([]byte(src)))
	require.Error(t, err)
	require.Contains(t, err.Error(), "/method/0/params/concurrency")
}

// TestValidateSeveralFiles: each valid file gets its ok line although
// another file is invalid, and the exit code (2) and the error name the
// invalid one.
func TestValidateSeveralFiles(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("version: 1\ntitel: x\n"), 0o644))
	good1 := "../experiments/catalog/av-latency-remediated.yaml"
	good2 := "../experiments/catalog/gray-av-link.yaml"
	code, out, errb := run(t, "--log-level", "warn", "validate", good1, bad, good2)
	require.Equal(t, cli.ExitInvalid, code, errb)
	require.Equal(t, good1+": ok\n"+good2+": ok\n", out)
	require.Contains(t, errb, bad+":2:1")
	require.NotContains(t, errb, good1)
}
