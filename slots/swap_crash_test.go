//go:build !windows

package slots

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The crash tests stop a change at each step, as a power cut would (the
// hook returns an error and nothing after it runs), then "reboot": open
// the slot again from disk, run the start guard (CountStart), and check
// that what starts is a complete version and that the state agrees with
// the symlink. Then they finish the update from there.

var errCrash = errors.New("simulated crash")

// crashAt returns a hook that fails the n-th step (from 0) and reports
// whether it did.
func crashAt(n int) (hook func(string) error, fired func() (string, bool)) {
	i, at := 0, ""
	return func(step string) error {
			if i == n {
				i++
				at = step
				return errCrash
			}
			i++
			return nil
		}, func() (string, bool) {
			return at, at != ""
		}
}

// kind abstracts over File and Dir for the crash tests.
type kind struct {
	name string
	// install puts a factory version at path.
	install func(t *testing.T, path, version string)
	// open manages path, with hook set from the start (migration).
	open func(path string, hook func(string) error) (*swapControl, error)
	// image is what is written to a slot for version.
	image func(t *testing.T, version string) []byte
	// read returns the version that runs through path.
	read func(path string) (string, error)
}

var kinds = []kind{
	{
		name: "file",
		install: func(t *testing.T, path, version string) {
			if err := os.WriteFile(path, []byte(version), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		open: func(path string, hook func(string) error) (*swapControl, error) {
			f, err := NewFile(path, func(f *File) { f.c.hook = hook })
			if err != nil {
				return nil, err
			}
			return f.c, nil
		},
		image: func(t *testing.T, version string) []byte { return []byte(version) },
		read: func(path string) (string, error) {
			b, err := os.ReadFile(path)
			return string(b), err
		},
	},
	{
		name: "dir",
		install: func(t *testing.T, path, version string) {
			if err := os.MkdirAll(filepath.Join(path, "lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(path, "VERSION"), []byte(version), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../VERSION", filepath.Join(path, "lib", "v")); err != nil {
				t.Fatal(err)
			}
		},
		open: func(path string, hook func(string) error) (*swapControl, error) {
			d, err := NewDir(path, func(d *Dir) { d.c.hook = hook })
			if err != nil {
				return nil, err
			}
			return d.c, nil
		},
		image: func(t *testing.T, version string) []byte {
			return makeTar(t, dirE("lib"), file("VERSION", version), symlink("lib/v", "../VERSION"))
		},
		read: func(path string) (string, error) {
			a, err := os.ReadFile(filepath.Join(path, "VERSION"))
			if err != nil {
				return "", err
			}
			b, err := os.ReadFile(filepath.Join(path, "lib", "v"))
			if err != nil {
				return "", err
			}
			if string(a) != string(b) {
				return "", fmt.Errorf("tree is inconsistent: VERSION %q, lib/v %q", a, b)
			}
			return string(a), nil
		},
	},
}

func (k kind) setup(t *testing.T) (path string, c *swapControl) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "app")
	k.install(t, path, "v1")
	c, err := k.open(path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return path, c
}

func (k kind) stage(t *testing.T, c *swapControl, slot, version string) {
	t.Helper()
	s := &swapSlot{c: c, name: slot, image: c.slotPath(slot)}
	if k.name == "dir" {
		s.image += ".archive"
	}
	img := k.image(t, version)
	w, err := s.Writer(context.Background(), int64(len(img)))
	if err != nil {
		t.Fatalf("Writer(%s): %v", slot, err)
	}
	defer w.Close()
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

// trialSetup returns a crashLoop setup: a fresh device with v2 staged
// into slot b and, when tries > 0, armed for tries tries and started once
// (the trial running).
func (k kind) trialSetup(tries int) func(t *testing.T) (string, *swapControl) {
	return func(t *testing.T) (string, *swapControl) {
		t.Helper()
		path, c := k.setup(t)
		k.stage(t, c, "b", "v2")
		if tries == 0 {
			return path, c
		}
		if err := c.Arm(ctx, "b", tries); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CountStart(ctx); err != nil {
			t.Fatal(err)
		}
		return path, c
	}
}

// reboot opens path afresh, runs the start guard, and checks that the
// version starting is the one the state says, complete.
func (k kind) reboot(t *testing.T, path string, versions map[string]string) (*swapControl, BootStatus) {
	t.Helper()
	c, err := k.open(path, nil)
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("open left the temporary %s in %s", e.Name(), c.dir)
		}
	}
	st, err := c.CountStart(context.Background())
	if err != nil {
		t.Fatalf("CountStart after the crash: %v", err)
	}
	booted, err := c.booted()
	if err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	if booted != st.Booted {
		t.Errorf("symlink at %s, CountStart says %s", booted, st.Booted)
	}
	disk, err := c.load()
	if err != nil {
		t.Fatalf("state after the crash: %v", err)
	}
	if disk.target() != booted {
		t.Errorf("state %+v wants %s to run, symlink at %s", disk, disk.target(), booted)
	}
	got, err := k.read(path)
	if err != nil {
		t.Fatalf("reading what starts: %v", err)
	}
	if want := versions[booted]; got != want {
		t.Errorf("slot %s starts %q, want %q", booted, got, want)
	}
	return c, st
}

// crashLoop runs change with a crash at step 0, 1, ... until it completes,
// calling check after each crash. setup prepares a fresh device each time.
func crashLoop(t *testing.T, setup func(t *testing.T) (string, *swapControl), change func(c *swapControl) error, check func(t *testing.T, path string)) {
	for n := 0; ; n++ {
		path, c := setup(t)
		hook, fired := crashAt(n)
		c.hook = hook
		err := change(c)
		c.hook = nil
		step, crashed := fired()
		if !crashed {
			if err != nil {
				t.Fatalf("change without a crash: %v", err)
			}
			if n == 0 {
				t.Fatal("the change has no steps to crash between")
			}
			return
		}
		t.Run(fmt.Sprintf("after_%s", step), func(t *testing.T) {
			if !errors.Is(err, errCrash) {
				t.Fatalf("change crashed at %s: got %v, want errCrash", step, err)
			}
			check(t, path)
		})
		if n > 20 {
			t.Fatal("too many steps")
		}
	}
}

var ctx = context.Background()

func TestCrashArm(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			crashLoop(t, k.trialSetup(0), func(c *swapControl) error { return c.Arm(ctx, "b", 2) }, func(t *testing.T, path string) {
				c, st := k.reboot(t, path, map[string]string{"a": "v1", "b": "v2"})
				switch st.Booted {
				case "b":
					if st.Trial != "b" || st.TriesLeft != 1 || st.Primary != "a" {
						t.Errorf("trial starting: %+v, want trial b with 1 try left, primary a", st)
					}
				case "a":
					if st.Trial != "" || st.Primary != "a" {
						t.Errorf("old version starting: %+v, want primary a and no trial", st)
					}
					// The update can be redone from here.
					if err := c.Arm(ctx, "b", 2); err != nil {
						t.Fatalf("Arm again: %v", err)
					}
					if got, _ := k.read(path); got != "v2" {
						t.Errorf("after Arm again: %q starts, want v2", got)
					}
				}
			})
		})
	}
}

// TestCrashRearm crashes an Arm after its state write, then crashes the
// repeated Arm at every step: the stale trial must never start a
// half-replaced version.
func TestCrashRearm(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			setup := func(t *testing.T) (string, *swapControl) {
				path, c := k.trialSetup(0)(t)
				c.hook = func(step string) error {
					if step == "arm:state" {
						return errCrash
					}
					return nil
				}
				if err := c.Arm(ctx, "b", 2); !errors.Is(err, errCrash) {
					t.Fatalf("first Arm: got %v, want errCrash", err)
				}
				c.hook = nil
				k.stage(t, c, "b", "v3")
				return path, c
			}
			crashLoop(t, setup, func(c *swapControl) error { return c.Arm(ctx, "b", 2) }, func(t *testing.T, path string) {
				// Slot b holds v2 or v3 depending on where the crash hit;
				// either way what starts must be whole and as the state says.
				c, err := k.open(path, nil)
				if err != nil {
					t.Fatal(err)
				}
				st, err := c.CountStart(ctx)
				if err != nil {
					t.Fatalf("CountStart: %v", err)
				}
				got, err := k.read(path)
				if err != nil {
					t.Fatalf("reading what starts: %v", err)
				}
				want := map[string][]string{"a": {"v1"}, "b": {"v3"}}[st.Booted]
				if !slices.Contains(want, got) {
					t.Errorf("slot %s starts %q, want one of %q (status %+v)", st.Booted, got, want, st)
				}
			})
		})
	}
}

func TestCrashRollback(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			crashLoop(t, k.trialSetup(2), func(c *swapControl) error { return c.MarkBad(ctx, "b") }, func(t *testing.T, path string) {
				_, st := k.reboot(t, path, map[string]string{"a": "v1", "b": "v2"})
				if st.Booted != "a" || st.Primary != "a" || st.Trial != "" || !slices.Contains(st.Bad, "b") {
					t.Errorf("after a rollback cut short: %+v, want a booted and primary, b bad", st)
				}
			})
		})
	}
}

func TestCrashTriesExhausted(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			// The one try is started; the next start finds none left.
			crashLoop(t, k.trialSetup(1), func(c *swapControl) error { _, err := c.CountStart(ctx); return err }, func(t *testing.T, path string) {
				_, st := k.reboot(t, path, map[string]string{"a": "v1", "b": "v2"})
				if st.Booted != "a" || st.Trial != "" || !slices.Contains(st.Bad, "b") {
					t.Errorf("after the tries ran out: %+v, want a booted, b bad", st)
				}
			})
		})
	}
}

func TestCrashMigration(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for n := 0; ; n++ {
				path := filepath.Join(t.TempDir(), "app")
				k.install(t, path, "v1")
				hook, fired := crashAt(n)
				_, err := k.open(path, hook)
				step, crashed := fired()
				if !crashed {
					if err != nil {
						t.Fatalf("migration: %v", err)
					}
					break
				}
				if !errors.Is(err, errCrash) {
					t.Fatalf("migration crashed at %s: got %v, want errCrash", step, err)
				}
				if got, err := k.read(path); err != nil || got != "v1" {
					t.Errorf("crash at %s: %q, %v starts; want v1", step, got, err)
				}
				c, st := k.reboot(t, path, map[string]string{"a": "v1"})
				if st.Booted != "a" || st.Primary != "a" {
					t.Errorf("crash at %s: after migrating again: %+v, want a booted and primary", step, st)
				}
				if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("crash at %s: after migrating again %s is not a symlink", step, path)
				}
				entries, _ := os.ReadDir(filepath.Dir(path))
				if len(entries) != 2 {
					var names []string
					for _, e := range entries {
						names = append(names, e.Name())
					}
					t.Errorf("crash at %s: left %q beside the path, want only it and its state directory", step, names)
				}
				_ = c
				if n > 10 {
					t.Fatal("too many steps")
				}
			}
		})
	}
}
