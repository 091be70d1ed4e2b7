package yamlfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

func TestParseRefusesBadText(t *testing.T) {
	for _, tt := range []struct {
		name, src, want string
	}{
		{"nul", "title: a\nmode: \"x\x00y\"\n", "f.yaml:2:9: a NUL byte (0x00): the file is not text"},
		{"utf8", "title: a\n# café\nmode: caf\xe9\n", "f.yaml:3:10: invalid UTF-8 (byte 0xe9): save the file as UTF-8"},
		{"utf8-after-multibyte", "tags: [é, \xff]\n", "f.yaml:1:11: invalid UTF-8 (byte 0xff): save the file as UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := yamlfile.Parse("f.yaml", []byte(tt.src))
			require.EqualError(t, err, tt.want)
			var list yamlfile.Errors
			require.ErrorAs(t, err, &list)
		})
	}
}

func TestParseRefusesDeepNesting(t *testing.T) {
	deepBlock := "extra:\n"
	for i := 1; i <= yamlfile.MaxNesting; i++ {
		deepBlock += strings.Repeat("  ", i) + "a:\n"
	}
	for _, tt := range []struct {
		name, src, want string
	}{
		{"flow", "extra: " + strings.Repeat("[", 100), "f.yaml:1:71: mappings and lists nest more than 64 levels deep"},
		{"flow-map", "extra: " + strings.Repeat("{a: ", 100), "f.yaml:1:260: mappings and lists nest more than 64 levels deep"},
		{"block", deepBlock, "f.yaml:65:129: mappings and lists nest more than 64 levels deep"},
		{"dashes", "extra:\n" + strings.Repeat("- ", 100) + "x\n", "f.yaml:2:127: mappings and lists nest more than 64 levels deep"},
		{"block-then-flow", "extra:\n  a:\n    b: " + strings.Repeat("[", 62), "f.yaml:3:69: mappings and lists nest more than 64 levels deep"},
		{"keys", "extra:\n" + strings.Repeat("  k: 1\n", yamlfile.MaxMappingKeys+1), "f.yaml:258:3: a mapping has more than 256 keys"},
		{"values", "tags: [" + strings.Repeat("a,", yamlfile.MaxValues) + "]", "f.yaml:1:60002: the file has more than 30000 values"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := yamlfile.Parse("f.yaml", []byte(tt.src))
			require.EqualError(t, err, tt.want)
			require.ErrorIs(t, err, yamlfile.ErrLimit)
		})
	}
}

// TestParseCountsOnlyStructure checks that brackets, dashes and colons in
// quoted scalars, block scalars and comments do not count as nesting.
func TestParseCountsOnlyStructure(t *testing.T) {
	deep := strings.Repeat("[", 100)
	src := "title: \"" + deep + "\"\n" +
		"mode: '" + deep + " it''s'\n" +
		"# " + deep + "\n" +
		"owner: |\n  " + deep + "\n  " + strings.Repeat("- ", 100) + "\n" +
		"tags: [\"" + deep + "\", '" + deep + "', a] # " + deep + "\n" +
		"endpoints: {a: \"x[1]\", b: \"{\", c: it's}\n" +
		"ports:\n  1: a[b {c [d\n" +
		"extra: " + strings.Repeat("[", yamlfile.MaxNesting-1) + strings.Repeat("]", yamlfile.MaxNesting-1) + "\n"
	var s sample
	require.NoError(t, decode(t, src, &s))
	require.Equal(t, deep, s.Title)
	require.Equal(t, deep+" it's", s.Mode)
	require.Equal(t, []string{deep, deep, "a"}, s.Tags)
}

// TestParseAcceptsTestdata checks the pre-scan against every YAML file of
// the repository's own testdata, catalog and docs examples.
func TestParseAcceptsRepositoryFiles(t *testing.T) {
	var files []string
	for _, glob := range []string{"testdata/*.yaml", "../../experiments/catalog/*.yaml", "../../targets/*/testdata/*.yaml"} {
		m, err := filepath.Glob(glob)
		require.NoError(t, err)
		files = append(files, m...)
	}
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		_, err = yamlfile.Parse(f, data)
		require.False(t, errors.Is(err, yamlfile.ErrLimit), "%s: %v", f, err)
	}
}

func TestReadFileRefusesLargeFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(big, []byte(strings.Repeat("# padding\n", 200)), 0o600))

	_, err := yamlfile.ReadFileLimit(big, 2000)
	require.NoError(t, err)
	_, err = yamlfile.ReadFileLimit(big, 1999)
	require.EqualError(t, err, big+":200:10: the file is longer than 1999 bytes, the most a file may have; reading stopped here (set $MAILCHAOS_MAX_FILE_SIZE, such as 2MiB, to allow more)")
	require.ErrorIs(t, err, yamlfile.ErrLimit)

	t.Setenv(yamlfile.MaxFileSizeEnv, "1KiB")
	_, err = yamlfile.ReadFile(big)
	require.ErrorContains(t, err, big+":103:5: the file is longer than 1 KiB")
	t.Setenv(yamlfile.MaxFileSizeEnv, "lots")
	_, err = yamlfile.ReadFile(big)
	require.EqualError(t, err, big+`: cannot read: $MAILCHAOS_MAX_FILE_SIZE: "lots" is not a size such as 2MiB, 512KiB or 1048576`)
}

// TestReadFileStopsAtTheLimit reads files that never end: /dev/zero and a
// named pipe whose writer never closes it.
func TestReadFileStopsAtTheLimit(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err := yamlfile.ReadFile("/dev/zero")
		require.EqualError(t, err, "/dev/zero:1:1048577: the file is longer than 1 MiB, the most a file may have; reading stopped here (set $MAILCHAOS_MAX_FILE_SIZE, such as 2MiB, to allow more)")
	}
	fifo := filepath.Join(t.TempDir(), "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	writer := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			writer <- err
			return
		}
		defer w.Close()
		line := []byte("a: 1\n")
		for {
			select {
			case <-done:
				writer <- nil
				return
			default:
			}
			if _, err := w.Write(line); err != nil {
				writer <- nil // the reader stopped reading: what we want
				return
			}
		}
	}()
	_, err := yamlfile.ReadFileLimit(fifo, 4096)
	require.ErrorContains(t, err, fifo+":820:2: the file is longer than 4 KiB")
	require.NoError(t, <-writer)
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "2MiB": 2 << 20, "512kib": 512 << 10, "1G": 1 << 30, "5MB": 5_000_000, "10 KB": 10_000, "3b": 3,
	} {
		got, err := yamlfile.ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1", "MiB", "1.5MiB", "2TiB", "99999999999999999999"} {
		_, err := yamlfile.ParseSize(in)
		require.Error(t, err, in)
	}
}
