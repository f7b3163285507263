package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// guestServer is the address the guest reaches the host's HTTP server at.
// It exists only inside QEMU's user network: QEMU runs fwdScript for each
// connection, and the script connects to the server on 127.0.0.1.
const guestServer = "10.0.2.100:8080"

// vm is one QEMU process running a disk image. Its serial console is read
// line by line; every line goes to the transcript and to whoever waits.
type vm struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when QEMU has exited
	err   error         // QEMU's exit status, set before done closes
	log   func(format string, a ...any)
}

// vmConfig says how to start QEMU.
type vmConfig struct {
	Disk    string // disk image the guest writes to (a throwaway overlay)
	Format  string // "qcow2" (default) or "raw"
	Busybox string // busybox for the guestfwd relay (host side)
	Port    int    // host HTTP server port on 127.0.0.1
	WorkDir string // where the relay script and the console log go
	Console io.Writer
	// Echo, when set, is called with every console line (the transcript
	// shows the interesting ones).
	Echo     func(line string)
	Logf     func(format string, a ...any)
	MemoryMB int
	Arch     string // archAMD64 (default: PC, BIOS, GRUB) or archARM64 (virt, U-Boot)
}

// fwdScript writes the guestfwd relay script: libslirp splits cmd: on
// spaces without quoting, so the command line lives in a file.
func fwdScript(dir, busybox string, port int) (string, error) {
	p := filepath.Join(dir, fmt.Sprintf("guestfwd-%d.sh", port))
	if strings.ContainsAny(p, " \t\n,") {
		return "", fmt.Errorf("guestfwd script path %q has a space or comma, which QEMU's command line cannot carry: use a cache directory without one", p)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s nc 127.0.0.1 %d\n", busybox, port)
	return p, os.WriteFile(p, []byte(script), 0o755)
}

// qemuArgs is the QEMU command line: TCG, one CPU, a virtio disk, and user
// networking restricted to the one forwarded address.
func qemuArgs(disk, format, script string, memMB int) []string {
	return []string{
		"-accel", "tcg", "-machine", "pc", "-smp", "1", "-m", fmt.Sprint(memMB),
		"-nodefaults", "-no-user-config", "-display", "none",
		// werror/rerror=report: a write error (ENOSPC included, which QEMU
		// would otherwise answer by pausing the guest) reaches the guest
		// as an I/O error, as on a real disk.
		"-drive", "file=" + disk + ",format=" + format + ",if=virtio,cache=writeback,werror=report,rerror=report",
		"-netdev", "user,id=n0,restrict=on,guestfwd=tcp:" + guestServer + "-cmd:" + script,
		"-device", "virtio-net-pci,netdev=n0",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
	}
}

// startVM starts QEMU. The caller must call stop.
func startVM(ctx context.Context, c vmConfig) (*vm, error) {
	script, err := fwdScript(c.WorkDir, c.Busybox, c.Port)
	if err != nil {
		return nil, err
	}
	if c.Format == "" {
		c.Format = "qcow2"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 256
	}
	prog, args := "qemu-system-x86_64", qemuArgs(c.Disk, c.Format, script, c.MemoryMB)
	if c.Arch == archARM64 {
		prog, args = "qemu-system-aarch64", qemuArgsARM64(c.Disk, c.Format, script, c.MemoryMB)
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	// The console is output only: stdin stays open (never written) so that
	// QEMU does not see end of file.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &vm{cmd: cmd, lines: make(chan string, 4096), done: make(chan struct{}), log: c.Logf}
	go func() {
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := r.ReadString('\n')
			line = strings.TrimRight(line, "\r\n")
			if line != "" {
				line = stripANSI(line)
				if c.Echo != nil {
					c.Echo(line)
				}
				if c.Console != nil {
					fmt.Fprintf(c.Console, "%s | %s\n", time.Now().UTC().Format("15:04:05.000"), line)
				}
				select {
				case v.lines <- line:
				default: // nobody is reading: drop rather than block QEMU
				}
			}
			if err != nil {
				break
			}
		}
		err := cmd.Wait()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			err = errors.Join(err, fmt.Errorf("qemu stderr: %s", s))
		}
		v.err = err
		close(v.done)
	}()
	return v, nil
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]`)

func stripANSI(s string) string { return ansiRE.ReplaceAllString(s, "") }

// errNoMatch is returned by wait when no line matched in time.
var errNoMatch = errors.New("no console line matched")

// errVMExited is returned by wait when QEMU exits before the line appears.
var errVMExited = errors.New("qemu exited")

// wait reads console lines until one matches re, and returns its submatches.
// Lines matching fail make it return an error at once.
func (v *vm) wait(ctx context.Context, timeout time.Duration, re *regexp.Regexp, fail *regexp.Regexp) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line := <-v.lines:
			if fail != nil && fail.MatchString(line) {
				return nil, fmt.Errorf("console: %q while waiting for /%s/", line, re)
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m, nil
			}
		case <-v.done:
			// Drain what QEMU printed before it exited.
			for {
				select {
				case line := <-v.lines:
					if m := re.FindStringSubmatch(line); m != nil {
						return m, nil
					}
					continue
				default:
				}
				break
			}
			return nil, fmt.Errorf("%w while waiting for /%s/: %v", errVMExited, re, v.err)
		case <-t.C:
			return nil, fmt.Errorf("%w /%s/ within %v", errNoMatch, re, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// kill powers the guest off hard: SIGKILL to QEMU, as a power cut. Whatever
// the guest had not written to its virtual disk is lost.
func (v *vm) kill() {
	if v.cmd.Process != nil {
		v.cmd.Process.Kill()
	}
	<-v.done
}

// stop is kill for the end of a run.
func (v *vm) stop() { v.kill() }
