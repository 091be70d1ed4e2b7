package safefile_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/safefile"
)

// entries lists the names in dir: no temporary file may be left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.json")
	require.NoError(t, safefile.Write(path, []byte("one"), 0o600, safefile.Replace))
	require.NoError(t, safefile.Write(path, []byte("two"), 0o644, safefile.Replace))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "two", string(got))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())
	require.Equal(t, []string{"report.json"}, entries(t, dir))
}

func TestReplaceRefusesALinkAndWritesNothingThrough(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o600))
	link := filepath.Join(dir, "report.json")
	require.NoError(t, os.Symlink(victim, link))
	err := safefile.Write(link, []byte("overwritten"), 0o644, safefile.Replace)
	require.ErrorIs(t, err, safefile.ErrSymlink)
	require.Contains(t, err.Error(), link)
	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "precious", string(got))
	require.ElementsMatch(t, []string{"victim", "report.json"}, entries(t, dir))

	require.ErrorIs(t, safefile.Write(dir, []byte("x"), 0o644, safefile.Replace), safefile.ErrNotRegular)
}

func TestCreateNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "exp.yaml")
	require.NoError(t, safefile.Write(path, []byte("first"), 0o644, safefile.Create))
	require.ErrorIs(t, safefile.Write(path, []byte("second"), 0o644, safefile.Create), fs.ErrExist)
	dangling := filepath.Join(dir, "dangling.yaml")
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), dangling))
	require.ErrorIs(t, safefile.Write(dangling, []byte("x"), 0o644, safefile.Create), fs.ErrExist)
	_, err := os.Lstat(filepath.Join(dir, "nowhere"))
	require.ErrorIs(t, err, fs.ErrNotExist, "nothing was written through the dangling link")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "first", string(got))
	require.ElementsMatch(t, []string{"exp.yaml", "dangling.yaml"}, entries(t, dir))
}

func TestForceReplacesALinkNotItsTarget(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o600))
	link := filepath.Join(dir, "exp.yaml")
	require.NoError(t, os.Symlink(victim, link))
	require.NoError(t, safefile.Write(link, []byte("new"), 0o644, safefile.Force))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular(), "the link was replaced by a file")
	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "precious", string(got))
	require.Error(t, safefile.Write(dir, []byte("x"), 0o644, safefile.Force), "a directory is never replaced")
}

func TestAFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	err := safefile.Write(filepath.Join(dir, "missing", "x.json"), []byte("x"), 0o644, safefile.Replace)
	require.Error(t, err)
	require.Contains(t, err.Error(), "x.json")
	require.Empty(t, entries(t, dir))
}
