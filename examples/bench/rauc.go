package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// raucBench installs the local image with RAUC, for comparison: a plain
// bundle of it (uncompressed squashfs, signed with a throw-away key), a
// system with two raw slots that are files and bootloader=noop, and
// RAUC's service on a private dbus-daemon (as the system bus: RAUC talks to
// nothing else). It needs root (RAUC loop-mounts the bundle).
type raucBench struct {
	dir, bundle, slot string
	env               []string
	dbus, service     *exec.Cmd
}

// newRAUC prepares RAUC for image, or says why it cannot.
func newRAUC(work, image string) (*raucBench, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("rauc install needs root (it loop-mounts the bundle)")
	}
	for _, t := range []string{"rauc", "openssl", "mksquashfs", "dbus-daemon"} {
		if !tool(t) {
			return nil, fmt.Errorf("no %s command (apt-get install rauc squashfs-tools openssl dbus-daemon)", t)
		}
	}
	dir := filepath.Join(work, "rauc")
	rb := &raucBench{dir: dir, bundle: filepath.Join(dir, "bundle.raucb"), slot: filepath.Join(dir, "B.img")}
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		return nil, err
	}
	if err := os.Link(image, filepath.Join(content, "rootfs.img")); err != nil {
		return nil, err
	}
	manifest := "[update]\ncompatible=switchback-bench\nversion=" + version + "\n[bundle]\nformat=plain\n[image.rootfs]\nfilename=rootfs.img\n"
	conf := fmt.Sprintf("[system]\ncompatible=switchback-bench\nbootloader=noop\nmountprefix=%[1]s/mnt\ndata-directory=%[1]s/data\n"+
		"[keyring]\npath=%[1]s/cert.pem\n[slot.rootfs.0]\ndevice=%[1]s/A.img\ntype=raw\nbootname=A\n[slot.rootfs.1]\ndevice=%[1]s/B.img\ntype=raw\nbootname=B\n", dir)
	for name, body := range map[string]string{"content/manifest.raucm": manifest, "system.conf": conf, "A.img": "factory\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"mnt", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := timeShell(fmt.Sprintf("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=switchback-bench -days 2 2>/dev/null"+
		" && rauc bundle --cert cert.pem --key key.pem --mksquashfs-args='-noI -noD -noF -noX' content bundle.raucb >/dev/null 2>&1", dir)); err != nil {
		return nil, fmt.Errorf("rauc bundle: %w", err)
	}
	if err := rb.start(); err != nil {
		rb.close()
		return nil, err
	}
	return rb, nil
}

// start starts the private bus and RAUC's service on it, booted from A.
func (rb *raucBench) start() error {
	rb.dbus = exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1")
	rb.dbus.SysProcAttr = childAttr()
	out, err := rb.dbus.StdoutPipe()
	if err != nil {
		return err
	}
	if err := rb.dbus.Start(); err != nil {
		return err
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("dbus-daemon: %w", err)
	}
	rb.env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+strings.TrimSpace(addr))
	rb.service = exec.Command("rauc", "service", "--conf="+filepath.Join(rb.dir, "system.conf"), "--override-boot-slot=A")
	rb.service.Env, rb.service.SysProcAttr = rb.env, childAttr()
	if err := rb.service.Start(); err != nil {
		return err
	}
	for range 100 {
		st := exec.Command("rauc", "status")
		st.Env = rb.env
		if st.Run() == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("rauc service did not answer on the private bus")
}

// run installs the bundle into a new, empty slot B and returns the seconds
// rauc install took.
func (rb *raucBench) run() (float64, error) {
	if err := os.WriteFile(rb.slot, nil, 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command("rauc", "install", rb.bundle)
	cmd.Env, cmd.SysProcAttr = rb.env, childAttr()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("rauc install: %w\n%s", err, out)
	}
	return time.Since(start).Seconds(), nil
}

// close stops the service and the bus, and removes everything.
func (rb *raucBench) close() {
	for _, c := range []*exec.Cmd{rb.service, rb.dbus} {
		if c != nil && c.Process != nil {
			c.Process.Kill()
			c.Wait()
		}
	}
	os.RemoveAll(rb.dir)
}
