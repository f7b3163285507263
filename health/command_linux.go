package health

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes the command the leader of a new process group and
// kills the whole group when the check's context ends, so a script's
// children (a `sleep`, a hung curl) die with it instead of piling up every
// retry interval.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
