package plugins

import (
	"os/exec"
	"syscall"
)

// dieWithHost asks the kernel to send the plugin SIGTERM when mailchaos
// dies, however it dies (SIGKILL included): the plugin then removes its
// faults and exits (plugins/sdk).
func dieWithHost(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
