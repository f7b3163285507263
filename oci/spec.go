package oci

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// imageConfig is the part of an OCI image config a runtime spec needs.
type imageConfig struct {
	Config struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
}

// RuntimeSpec makes the OCI runtime config.json of a bundle from an image
// config: the process is the image's entrypoint and command, with its
// environment, working directory and numeric user. The container gets its
// own pid, ipc, uts and mount namespaces and shares the host's network,
// so that its own check answers on the host's loopback.
func RuntimeSpec(config []byte) ([]byte, error) {
	var ic imageConfig
	if err := json.Unmarshal(config, &ic); err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrBadManifest, err)
	}
	args := append(append([]string{}, ic.Config.Entrypoint...), ic.Config.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: image config has no entrypoint or command", ErrBadManifest)
	}
	uid, gid, err := numericUser(ic.Config.User)
	if err != nil {
		return nil, err
	}
	cwd := ic.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID", "CAP_AUDIT_WRITE"}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": uid, "gid": gid},
			"args": args, "env": ic.Config.Env, "cwd": cwd, "noNewPrivileges": true,
			"capabilities": map[string]any{"bounding": caps, "effective": caps, "permitted": caps},
		},
		"root":     map[string]any{"path": "rootfs", "readonly": false},
		"hostname": "switchback",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
		},
		"linux": map[string]any{
			"namespaces":    []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
			"maskedPaths":   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			"readonlyPaths": []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	return json.MarshalIndent(spec, "", "  ")
}

// numericUser parses "uid[:gid]"; names would need the image's /etc/passwd.
func numericUser(u string) (uid, gid int, err error) {
	if u == "" {
		return 0, 0, nil
	}
	us, gs, _ := strings.Cut(u, ":")
	if uid, err = strconv.Atoi(us); err != nil {
		return 0, 0, fmt.Errorf("%w: image user %q is not numeric", ErrBadManifest, u)
	}
	if gs == "" {
		return uid, uid, nil
	}
	if gid, err = strconv.Atoi(gs); err != nil {
		return 0, 0, fmt.Errorf("%w: image user %q is not numeric", ErrBadManifest, u)
	}
	return uid, gid, nil
}
