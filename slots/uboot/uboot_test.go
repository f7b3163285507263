package uboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/internal/abenv"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

const envSize = 0x400

// simBoot is a Control with a simulated U-Boot running boot.cmd: Reboot
// loads the current copy (none valid: the script's variables stay empty),
// makes the script's choice, saves the consumed try as saveenv does (the
// other copy, next flags, when redundant) and writes the kernel command
// line.
type simBoot struct {
	*Control
}

func (s simBoot) Reboot() error {
	var st abenv.State
	l, err := s.read()
	switch {
	case errors.Is(err, ErrNoValidEnv):
		st = abenv.ReadState(func(string) (string, bool) { return "", false }, s.names)
	case err != nil:
		return err
	default:
		st = abenv.ReadState(func(n string) (string, bool) { return get(l.vars, n) }, s.names)
	}
	slot, after := abenv.BootDecision(st)
	if err == nil && after.Tries != st.Tries {
		vars, err := Set(l.vars, VarTries, strconv.Itoa(after.Tries))
		if err != nil {
			return err
		}
		save := s.writeCopy
		s.writeCopy = func(f *os.File, b []byte, off int64) error { _, err := f.WriteAt(b, off); return err }
		err = s.write(l, vars)
		s.writeCopy = save
		if err != nil {
			return fmt.Errorf("saveenv: %w", err)
		}
	}
	if s.runtimeDir != "" {
		if err := os.RemoveAll(s.runtimeDir); err != nil {
			return err
		}
	}
	return writeCmdline(s.cmdline, slot, st.Canary)
}

func writeCmdline(path, slot, canary string) error {
	line := fmt.Sprintf("console=ttyAMA0 root=PARTLABEL=rootfs_%s rootwait switchback.slot=%s switchback.canary=%s\n", slot, slot, canary)
	return os.WriteFile(path, []byte(line), 0o644)
}

// newTestControl makes an environment holding only bootcmd (single or
// redundant copies in one file, as mkenvimage would make them), booted
// from the first slot.
func newTestControl(t *testing.T, redundant bool, names ...string) simBoot {
	t.Helper()
	if len(names) == 0 {
		names = []string{"a", "b"}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "uboot.env")
	devs := []Device{{Path: path, Offset: 0x200, EnvSize: envSize}}
	if redundant {
		devs = append(devs, Device{Path: path, Offset: 0x200 + envSize, EnvSize: envSize})
	}
	img, err := EncodeImage([]Var{{"bootcmd", "run distro_bootcmd"}}, envSize, redundant, 1, 0xff)
	if err != nil {
		t.Fatal(err)
	}
	file := make([]byte, 0x200+2*envSize)
	copy(file[0x200:], img)
	if redundant {
		copy(file[0x200+envSize:], img)
	}
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline")
	if err := writeCmdline(cmdline, names[0], ""); err != nil {
		t.Fatal(err)
	}
	c, err := New(devs, names, WithCmdline(cmdline), WithRuntimeDir(filepath.Join(dir, "run")), WithLockFile(filepath.Join(dir, "fw.lock")))
	if err != nil {
		t.Fatal(err)
	}
	return simBoot{c}
}

func TestBootControlConformance(t *testing.T) {
	for _, redundant := range []bool{false, true} {
		t.Run(fmt.Sprintf("redundant=%v", redundant), func(t *testing.T) {
			slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
				return newTestControl(t, redundant), []string{"a", "b"}
			})
		})
	}
}

func TestNewErrors(t *testing.T) {
	d := Device{Path: "/f", EnvSize: 0x100}
	for _, tc := range []struct {
		devs  []Device
		names []string
	}{
		{[]Device{d}, []string{"a"}},
		{nil, []string{"a", "b"}},
		{[]Device{d, d, d}, []string{"a", "b"}},
		{[]Device{d, {Path: "/g", EnvSize: 0x200}}, []string{"a", "b"}},
		{[]Device{{Path: "/dev/mtd1", EnvSize: 0x100}}, []string{"a", "b"}},
		{[]Device{{Path: "/f", EnvSize: 4}}, []string{"a", "b"}},
	} {
		if _, err := New(tc.devs, tc.names); err == nil {
			t.Errorf("New(%+v, %q): got nil error", tc.devs, tc.names)
		}
	}
}

func TestRedundantWritesAlternate(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t, true)
	for i, want := range []struct {
		copy  int
		flags byte
	}{{1, 2}, {0, 3}, {1, 4}} {
		if err := c.SetEnv(ctx, map[string]string{"n": strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		l, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if l.current != want.copy || l.flags != want.flags {
			t.Errorf("write %d: current copy %d flags %d, want %d flags %d", i, l.current, l.flags, want.copy, want.flags)
		}
	}
	env, err := c.Env(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if env["n"] != "2" || env["bootcmd"] != "run distro_bootcmd" {
		t.Errorf("Env() = %q", env)
	}
}

func TestInit(t *testing.T) {
	ctx := context.Background()
	for _, redundant := range []bool{false, true} {
		c := newTestControl(t, redundant)
		if err := c.Init(ctx); err == nil {
			t.Errorf("Init over a valid environment: got nil error")
		}
		if err := os.WriteFile(c.devs[0].Path, make([]byte, 0x200+2*envSize), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(ctx); !errors.Is(err, ErrNoValidEnv) {
			t.Errorf("Status of a blank device: got %v, want ErrNoValidEnv", err)
		}
		if err := c.Arm(ctx, "b", 2); !errors.Is(err, ErrNoValidEnv) {
			t.Errorf("Arm on a blank device: got %v, want ErrNoValidEnv", err)
		}
		if err := c.Init(ctx); err != nil {
			t.Fatalf("Init: %v", err)
		}
		st, err := c.Status(ctx)
		if err != nil || st.Primary != "a" || st.Trial != "" {
			t.Errorf("Status after Init: %+v, %v", st, err)
		}
	}
}

// TestCanary: the canary check fails where U-Boot and userspace do not
// share the environment; that it passes where they do (through Arm,
// reboot and Commit) is checked by the conformance suite.
func TestCanary(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t, true)
	if err := c.Arm(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Reboot(); err != nil {
		t.Fatal(err)
	}
	// U-Boot reads another environment than userspace writes.
	if err := writeCmdline(c.cmdline, "b", "0000000000000000"); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckCanary(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("CheckCanary with another canary: got %v, want ErrMismatch", err)
	} else {
		t.Logf("the integrator reads: %v", err)
	}
	if err := os.WriteFile(c.cmdline, []byte("root=/dev/mmcblk0p2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("Status without switchback.slot=: got %v, want ErrMismatch", err)
	}
}

// tearAt makes the next copy write stop after k bytes and fail.
func tearAt(c *Control, k int) {
	c.writeCopy = func(f *os.File, b []byte, off int64) error {
		if _, err := f.WriteAt(b[:k], off); err != nil {
			return err
		}
		return errors.New("power cut")
	}
}

// A power cut at every byte of every write of arm, commit and mark-bad:
// a redundant environment always reads as the old or the new state (a
// torn copy has a bad CRC and the older copy wins); a single copy reads
// as the old state, the new state, or no valid environment, which U-Boot
// and boot.cmd boot from the first slot.
func TestPowerCutEveryByte(t *testing.T) {
	ctx := context.Background()
	steps := []struct {
		name string
		prep func(c simBoot) error
		step func(c simBoot) error
	}{
		{"arm", func(simBoot) error { return nil }, func(c simBoot) error { return c.Arm(ctx, "b", 3) }},
		{"commit", func(c simBoot) error {
			if err := c.Arm(ctx, "b", 3); err != nil {
				return err
			}
			return c.Reboot()
		}, func(c simBoot) error { return c.Commit(ctx, "b") }},
		{"mark bad", func(c simBoot) error {
			if err := c.Arm(ctx, "b", 3); err != nil {
				return err
			}
			return c.Reboot()
		}, func(c simBoot) error { return c.MarkBad(ctx, "b") }},
	}
	for _, redundant := range []bool{false, true} {
		for _, sc := range steps {
			t.Run(fmt.Sprintf("%s/redundant=%v", sc.name, redundant), func(t *testing.T) {
				ref := newTestControl(t, redundant)
				if err := sc.prep(ref); err != nil {
					t.Fatal(err)
				}
				oldFile, _ := os.ReadFile(ref.devs[0].Path)
				cmdline, _ := os.ReadFile(ref.cmdline)
				oldSt, err := ref.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ref.rand = bytes.NewReader(bytes.Repeat([]byte{7}, 64))
				if err := sc.step(ref); err != nil {
					t.Fatal(err)
				}
				newSt, err := ref.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				newFile, _ := os.ReadFile(ref.devs[0].Path)
				c := newTestControl(t, redundant)
				check := func(k int, stepErr error, how string) {
					t.Helper()
					st, err := c.Status(ctx)
					switch {
					case err == nil && reflect.DeepEqual(st, oldSt):
						if k == envSize {
							t.Errorf("%s k=%d: a complete write left the old state", how, k)
						}
					case err == nil && reflect.DeepEqual(st, newSt):
						if k < envSize && stepErr == nil {
							t.Errorf("%s k=%d: a torn write reported success", how, k)
						}
					case errors.Is(err, ErrNoValidEnv) && !redundant:
						// U-Boot falls back to its default environment.
					default:
						t.Fatalf("%s k=%d: state %+v, %v; want %+v or %+v", how, k, st, err, oldSt, newSt)
					}
					// Power on: the bootloader runs and boots something.
					c.writeCopy = writeAtSync
					if err := c.Reboot(); err != nil {
						t.Fatalf("%s k=%d: boot after the cut: %v", how, k, err)
					}
				}
				// Through the Control: the step runs and its write is torn.
				for _, k := range []int{0, 1, 3, 4, 5, 6, envSize / 2, envSize - 1, envSize} {
					if err := os.WriteFile(c.devs[0].Path, oldFile, 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(c.cmdline, cmdline, 0o644); err != nil {
						t.Fatal(err)
					}
					c.rand = bytes.NewReader(bytes.Repeat([]byte{7}, 64))
					tearAt(c.Control, k)
					check(k, sc.step(c), "step")
				}
				// Every byte: the same torn files, made directly (the
				// write that changed one copy, stopped after k bytes).
				var off int64 = -1
				for _, d := range c.devs {
					if !bytes.Equal(oldFile[d.Offset:d.Offset+envSize], newFile[d.Offset:d.Offset+envSize]) {
						off = d.Offset
					}
				}
				if off < 0 {
					t.Fatal("the step changed no copy")
				}
				for k := 0; k <= envSize; k++ {
					torn := bytes.Clone(oldFile)
					copy(torn[off:off+int64(k)], newFile[off:])
					l, err := c.decode(func(i int) ([]byte, error) {
						d := c.devs[i]
						return torn[d.Offset : d.Offset+int64(d.EnvSize)], nil
					})
					var st abenv.State
					if err == nil {
						st = abenv.ReadState(func(n string) (string, bool) { return get(l.vars, n) }, c.names)
					}
					switch {
					case err == nil && reflect.DeepEqual(st.Status(oldSt.Booted), oldSt):
						if k == envSize {
							t.Errorf("k=%d: a complete write left the old state", k)
						}
					case err == nil && reflect.DeepEqual(st.Status(newSt.Booted), newSt):
					case errors.Is(err, ErrNoValidEnv) && !redundant:
						// U-Boot falls back to its default environment,
						// boot.cmd to the first slot.
					default:
						t.Fatalf("k=%d: state %+v, %v; want %+v or %+v", k, st, err, oldSt, newSt)
					}
				}
			})
		}
	}
}

func writeConfig(t *testing.T, c simBoot) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(p, []byte(FormatFwEnvConfig(c.devs)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fwPrintenv(t *testing.T, tool, config string) map[string]string {
	t.Helper()
	out, err := exec.Command(tool, "-c", config).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v: %s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("fw_printenv line %q", line)
		}
		m[k] = v
	}
	return m
}

func TestFwPrintenvReadsOurWrites(t *testing.T) {
	tool := ci.LookPath(t, "fw_printenv", "libubootenv-tool")
	ctx := context.Background()
	for _, redundant := range []bool{false, true} {
		c := newTestControl(t, redundant)
		cfg := writeConfig(t, c)
		for i := 0; i < 3; i++ { // several writes: both copies in turn
			if err := c.Arm(ctx, "b", 3+i); err != nil {
				t.Fatal(err)
			}
			ours, err := c.Env(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := fwPrintenv(t, tool, cfg); !reflect.DeepEqual(got, ours) {
				t.Errorf("redundant=%v write %d: fw_printenv %q, we wrote %q", redundant, i, got, ours)
			}
		}
	}
}

func TestWeReadFwSetenvWrites(t *testing.T) {
	tool := ci.LookPath(t, "fw_setenv", "libubootenv-tool")
	ctx := context.Background()
	for _, redundant := range []bool{false, true} {
		c := newTestControl(t, redundant)
		cfg := writeConfig(t, c)
		if err := c.Commit(ctx, "a"); err != nil { // our write first
			t.Fatal(err)
		}
		script := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(script, []byte("sb_trial=b\nsb_tries=2\nsb_bad=a b\nsb_canary=42\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(tool, "-c", cfg, "-s", script).CombinedOutput(); err != nil {
			t.Fatalf("fw_setenv -s: %v: %s", err, out)
		}
		if err := writeCmdline(c.cmdline, "b", "42"); err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := slots.BootStatus{Booted: "b", Primary: "a", Trial: "b", TriesLeft: 2, Bad: []string{"a", "b"}}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("redundant=%v: Status after fw_setenv: %+v, want %+v", redundant, st, want)
		}
		if err := c.CheckCanary(ctx); err != nil {
			t.Errorf("CheckCanary after fw_setenv: %v", err)
		}
		// fw_setenv's data and ours agree up to the terminator.
		l, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		d := c.devs[l.current]
		raw, _ := os.ReadFile(d.Path)
		raw = raw[d.Offset : d.Offset+int64(d.EnvSize)]
		ourImg, err := EncodeImage(l.vars, d.EnvSize, redundant, l.flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		h := header(redundant)
		end := bytes.Index(raw[h:], []byte{0, 0}) + h + 2
		if !bytes.Equal(raw[:end][h:], ourImg[h:end]) {
			t.Errorf("redundant=%v: fw_setenv data %q, ours %q", redundant, raw[h:end], ourImg[h:end])
		}
	}
}

func TestMkenvimageImages(t *testing.T) {
	tool := ci.LookPath(t, "mkenvimage", "u-boot-tools")
	ctx := context.Background()
	for _, redundant := range []bool{false, true} {
		c := newTestControl(t, redundant)
		in := filepath.Join(t.TempDir(), "env.txt")
		text := "bootcmd=run x\nsb_primary=b\nsb_trial=a\nsb_tries=1\nsb_canary=c0ffee\n"
		if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(t.TempDir(), "env.bin")
		args := []string{"-s", strconv.Itoa(envSize), "-o", img, in}
		if redundant {
			args = append([]string{"-r"}, args...)
		}
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("mkenvimage: %v: %s", err, out)
		}
		b, _ := os.ReadFile(img)
		file, _ := os.ReadFile(c.devs[0].Path)
		for _, d := range c.devs {
			copy(file[d.Offset:], b)
		}
		if err := os.WriteFile(c.devs[0].Path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := writeCmdline(c.cmdline, "a", "c0ffee"); err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (slots.BootStatus{Booted: "a", Primary: "b", Trial: "a", TriesLeft: 1}); !reflect.DeepEqual(st, want) {
			t.Errorf("redundant=%v: Status of a mkenvimage image: %+v, want %+v", redundant, st, want)
		}
		// And our write over it reads back in fw_printenv.
		if err := c.Commit(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		// The cross-check skips without the tool, or fails under CI=true.
		t.Run(fmt.Sprintf("fw_printenv redundant=%v", redundant), func(t *testing.T) {
			got := fwPrintenv(t, ci.LookPath(t, "fw_printenv", "libubootenv-tool"), writeConfig(t, c))
			if got["sb_primary"] != "a" || got["bootcmd"] != "run x" {
				t.Errorf("fw_printenv after Commit: %q", got)
			}
		})
	}
}

func TestBootCmd(t *testing.T) {
	script, err := os.ReadFile("boot.cmd")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(slices.Clone(abenv.VarOrder), "setexpr sb_tries ${sb_tries} - 1", "env import -c", "env export -c",
		"switchback.slot=${sb_boot}", "switchback.canary=${sb_canary}") {
		if !bytes.Contains(script, []byte(s)) {
			t.Errorf("boot.cmd does not contain %q", s)
		}
	}
	tool := ci.LookPath(t, "mkimage", "u-boot-tools")
	out := filepath.Join(t.TempDir(), "boot.scr")
	if b, err := exec.Command(tool, "-A", "arm64", "-T", "script", "-C", "none", "-n", "switchback", "-d", "boot.cmd", out).CombinedOutput(); err != nil {
		t.Fatalf("mkimage -T script: %v: %s", err, b)
	}
	scr, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(scr, script) {
		t.Errorf("boot.scr does not hold boot.cmd")
	}
}

// libubootenv keeps its .flags variable last; so do we.
func TestFlagsVarLast(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t, false)
	if err := c.SetEnv(ctx, map[string]string{".flags": "sb_tries:dw", "zz": "1"}); err != nil {
		t.Fatal(err)
	}
	l, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if last := l.vars[len(l.vars)-1]; last.Name != ".flags" {
		t.Errorf("last variable %q, want .flags (vars %q)", last.Name, l.vars)
	}
	if err := writeCmdline(c.cmdline, "nope", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("Status booted from an unknown slot: got %v, want ErrMismatch", err)
	}
}
