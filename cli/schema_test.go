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
// example plugin found as validate finds it, accepts every catalog file
// (YAML turned into JSON, checked by a real JSON Schema validator), and
// refuses a plugin's parameter of the wrong kind.
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

	// The plugin's own parameters: code is a whole number from 400 to
	// 599, fraction a fraction, and there is no parameter cmd.
	data, err := os.ReadFile("../experiments/catalog/smtp-ingress-tempfail.yaml")
	require.NoError(t, err)
	for _, tt := range []struct{ old, bad string }{
		{"code: 451", "code: 600"}, {"code: 451", "code: soon"}, {"fraction: 40%", "fraction: lots"}, {"command: rcpt", "cmd: rcpt"},
	} {
		src := strings.Replace(string(data), tt.old, tt.bad, 1)
		require.NotEqual(t, string(data), src)
		err := sch.Validate(asJSON([]byte(src)))
		require.Error(t, err, tt.bad)
		require.Contains(t, err.Error(), "/method/1/params", tt.bad)
	}
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
