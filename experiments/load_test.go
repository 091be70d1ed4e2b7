package experiments_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/maintenance"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func builtinCatalog(t testing.TB) experiments.Catalog {
	t.Helper()
	reg := faults.NewRegistry()
	for _, inj := range []faults.Injector{avlatency.New(), grayfailure.New(), loadsurge.New(), maintenance.New()} {
		require.NoError(t, reg.Add(context.Background(), inj))
	}
	return experiments.Catalog{Faults: reg, Probes: probes.NewRegistry(probes.Builtin()...)}
}

// TestInvalidFiles checks the whole error report of every file in
// testdata/invalid against its golden file: every mistake, with its
// position, field path and suggestion.
func TestInvalidFiles(t *testing.T) {
	cat := builtinCatalog(t)
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := experiments.Load(context.Background(), f, cat)
			require.Error(t, err)
			var ye yamlfile.Errors
			require.True(t, errors.As(err, &ye), "%T: %v", err, err)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644))
			}
			want, rerr := os.ReadFile(golden)
			require.NoError(t, rerr, "run go test -update to create the golden file")
			require.Equal(t, string(want), err.Error()+"\n")
		})
	}
}

func TestCatalogIsValid(t *testing.T) {
	cat := builtinCatalog(t)
	files, err := filepath.Glob("catalog/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	// Experiments using an example plugin are validated, and run, with the
	// plugin built (cli/plugins_test.go).
	withPlugin := map[string]bool{"catalog/smtp-ingress-tempfail.yaml": true}
	for _, f := range files {
		if withPlugin[f] {
			continue
		}
		e, err := experiments.Load(context.Background(), f, cat)
		require.NoError(t, err, f)
		require.NotEmpty(t, e.Title)
	}
}

// FuzzDecode feeds arbitrary bytes to the experiment decoder: it must never
// panic, and every error must be a positioned yamlfile error.
func FuzzDecode(f *testing.F) {
	for _, glob := range []string{"testdata/invalid/*.yaml", "catalog/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	for _, s := range []string{
		"title: x\ndescription: " + strings.Repeat("[", 100),
		"title: x\nmethod:\n" + strings.Repeat("- ", 100) + "x\n",
		"title: \"a\x00b\"\n",
		"title: caf\xe9\n",
		"title: x\nparams: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
	} {
		f.Add([]byte(s))
	}
	cat := builtinCatalog(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := experiments.Parse(context.Background(), "fuzz.yaml", data, cat)
		if err == nil {
			return
		}
		var ye yamlfile.Errors
		if !errors.As(err, &ye) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
