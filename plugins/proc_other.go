//go:build !linux

package plugins

import "os/exec"

// setProcAttr does nothing here: the plugin notices that its parent is
// gone by polling (plugins/sdk).
func setProcAttr(*exec.Cmd) {}

// killGroup does nothing here: only the plugin itself is killed.
func killGroup(int) {}

// awaitExit returns at once here: the process is reaped first.
func awaitExit(int) {}
