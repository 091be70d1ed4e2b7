//go:build !unix

package plugins

// socketDir is empty where stale folders cannot be told apart: go-plugin's
// own temporary folders are used.
func socketDir() (string, error) { return "", nil }
