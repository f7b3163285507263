//go:build !linux

package health

import "os/exec"

// ownProcessGroup leaves the default: only the command itself is killed.
func ownProcessGroup(*exec.Cmd) {}
