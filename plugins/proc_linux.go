package plugins

import (
	"errors"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcAttr starts the plugin in a process group of its own, so that
// whatever it spawns can be killed with it, and asks the kernel to send it
// SIGTERM when mailchaos dies, however it dies (SIGKILL included): the
// plugin then removes its faults and exits (plugins/sdk).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// killGroup sends SIGKILL to the plugin's process group, the plugin and
// every process it started that stayed in its group. It must only be
// called before the plugin is reaped: until then its process ID, the
// group's ID, cannot be reused.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// awaitExit blocks until the process has exited, without reaping it.
func awaitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
