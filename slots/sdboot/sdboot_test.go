package sdboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// simBoot is a Control with a simulated systemd-boot: Reboot orders the
// entries, picks the first matching loader.conf's default, counts a try
// by renaming it, and sets LoaderEntrySelected.
type simBoot struct{ *Control }

func (s simBoot) Reboot() error {
	st, err := s.load()
	if err != nil {
		return err
	}
	pattern := entryField(mustReadFile(filepath.Join(s.cfg.ESP, "loader", "loader.conf")), "default")
	pick := ""
	for _, slot := range st.order {
		if ok, _ := path.Match(pattern, st.entries[slot].name.ID); ok || pattern == "" {
			pick = slot
			break
		}
	}
	if pick == "" {
		return errors.New("no entry matches the default pattern")
	}
	e := st.entries[pick]
	if tried := e.name.Tried(); tried != e.name {
		dir := s.entriesDir()
		if err := os.Rename(filepath.Join(dir, e.file), filepath.Join(dir, tried.String())); err != nil {
			return err
		}
	}
	return writeEFIString(s.efiVar("LoaderEntrySelected"), e.name.ID)
}

func mustReadFile(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}

func writeEFIString(p, s string) error {
	b := []byte{6, 0, 0, 0}
	for _, u := range utf16.Encode([]rune(s + "\x00")) {
		b = append(b, byte(u), byte(u>>8))
	}
	return os.WriteFile(p, b, 0o644)
}

func newTestControl(t *testing.T) simBoot {
	t.Helper()
	esp := t.TempDir()
	entries := filepath.Join(esp, "loader", "entries")
	efivars := filepath.Join(esp, "efivars")
	for _, d := range []string{entries, efivars} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(esp, "loader", "loader.conf"), []byte("timeout 0\ndefault switchback-*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ slot, key string }{{"a", SortKeyPrimary}, {"b", SortKeyOther}} {
		conf := fmt.Sprintf("title Switchback %s\nsort-key %s\nlinux /%s/vmlinuz\ninitrd /%s/initrd.img\noptions root=PARTLABEL=rootfs_%s switchback.slot=%s rw\n", s.slot, s.key, s.slot, s.slot, s.slot, s.slot)
		if err := os.WriteFile(filepath.Join(entries, "switchback-"+s.slot+".conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An unrelated entry, sorted by id only: never the default.
	if err := os.WriteFile(filepath.Join(entries, "zz-rescue.conf"), []byte("title Rescue\nlinux /rescue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeEFIString(filepath.Join(efivars, "LoaderEntrySelected-"+LoaderGUID), "switchback-a.conf"); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{ESP: esp, Slots: []string{"a", "b"}, EFIVarsDir: efivars, CmdlinePath: filepath.Join(esp, "no-cmdline")})
	if err != nil {
		t.Fatal(err)
	}
	return simBoot{c}
}

func TestBootControlConformance(t *testing.T) {
	slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		return newTestControl(t), []string{"a", "b"}
	})
}

func entryFiles(t *testing.T, c simBoot) []string {
	t.Helper()
	des, err := os.ReadDir(c.entriesDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestFileNames(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t)
	if err := c.Arm(ctx, "b", 3); err != nil {
		t.Fatal(err)
	}
	if got, want := entryFiles(t, c), []string{"switchback-a.conf", "switchback-b+3-0.conf", "zz-rescue.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Arm: %q, want %q", got, want)
	}
	if err := c.Reboot(); err != nil {
		t.Fatal(err)
	}
	if got, want := entryFiles(t, c), []string{"switchback-a.conf", "switchback-b+2-1.conf", "zz-rescue.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a boot: %q, want %q", got, want)
	}
	if err := c.Commit(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, want := entryFiles(t, c), []string{"switchback-a.conf", "switchback-b.conf", "zz-rescue.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Commit: %q, want %q", got, want)
	}
	if key := entryField(mustReadFile(filepath.Join(c.entriesDir(), "switchback-b.conf")), "sort-key"); key != SortKeyPrimary {
		t.Errorf("committed entry sort-key %q, want %q", key, SortKeyPrimary)
	}
	if err := c.MarkBad(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, want := entryFiles(t, c), []string{"switchback-a+0.conf", "switchback-b.conf", "zz-rescue.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after MarkBad(a): %q, want %q", got, want)
	}
}

func TestSetSortKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"title T\nlinux /x\n", "title T\nsort-key K\nlinux /x\n"},
		{"title T\nsort-key old\nlinux /x\nsort-key dup\n", "title T\nsort-key K\nlinux /x\n"},
		{"linux /x\n", "linux /x\nsort-key K\n"},
		{"linux /x", "linux /x\nsort-key K"},
	}
	for _, tt := range tests {
		if got := string(setSortKey([]byte(tt.in), "K")); got != tt.want {
			t.Errorf("setSortKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBootedFallbacks(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t)
	os.Remove(c.efiVar("LoaderEntrySelected"))
	if _, err := c.Status(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("Status with no LoaderEntrySelected nor cmdline: got %v, want ErrMismatch", err)
	}
	if err := os.WriteFile(c.cfg.CmdlinePath, []byte("root=/dev/sda2 switchback.slot=b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx); err != nil || st.Booted != "b" {
		t.Errorf("Status from the command line: %+v, %v, want booted b", st, err)
	}
	if err := writeEFIString(c.efiVar("LoaderEntrySelected"), "zz-rescue.conf"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("Status booted from another entry: got %v, want ErrMismatch", err)
	}
	os.Remove(filepath.Join(c.entriesDir(), "switchback-b.conf"))
	if err := writeEFIString(c.efiVar("LoaderEntrySelected"), "switchback-a.conf"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); err == nil {
		t.Errorf("Status with a slot's entry missing: got nil error")
	}
}

func TestCheckCanary(t *testing.T) {
	ctx := context.Background()
	c := newTestControl(t)
	if err := c.CheckCanary(ctx); err != nil {
		t.Errorf("CheckCanary of a good setup: %v", err)
	}
	conf := filepath.Join(c.cfg.ESP, "loader", "loader.conf")
	if err := os.WriteFile(conf, []byte("default switchback-a.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckCanary(ctx); !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("CheckCanary with a pinned default: got %v, want ErrMismatch", err)
	}
	if err := os.WriteFile(conf, []byte("default switchback-*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeEFIString(c.efiVar("LoaderEntryDefault"), "switchback-a.conf"); err != nil {
		t.Fatal(err)
	}
	err := c.CheckCanary(ctx)
	if !errors.Is(err, slots.ErrMismatch) {
		t.Errorf("CheckCanary with LoaderEntryDefault set: got %v, want ErrMismatch", err)
	} else {
		t.Logf("the integrator reads: %v", err)
	}
}

var errCut = errors.New("power cut")

// A power cut after every file operation of arm, commit and mark-bad
// leaves entries systemd-boot boots from the old or the new choice, a
// status userspace can read, and a step that completes when redone.
func TestPowerCutEveryOp(t *testing.T) {
	ctx := context.Background()
	arm := func(c simBoot) error { return c.Arm(ctx, "b", 3) }
	armBoot := func(c simBoot) error {
		if err := arm(c); err != nil {
			return err
		}
		return c.Reboot()
	}
	scenarios := []struct {
		name string
		prep func(c simBoot) error
		step func(c simBoot) error
	}{
		{"arm", func(simBoot) error { return nil }, arm},
		{"re-arm bad", func(c simBoot) error { return c.MarkBad(ctx, "b") }, arm},
		{"commit", armBoot, func(c simBoot) error { return c.Commit(ctx, "b") }},
		{"mark bad trial", armBoot, func(c simBoot) error { return c.MarkBad(ctx, "b") }},
		{"mark bad primary", func(c simBoot) error {
			if err := armBoot(c); err != nil {
				return err
			}
			return c.Commit(ctx, "b")
		}, func(c simBoot) error { return c.MarkBad(ctx, "b") }},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			decision := func(c simBoot) string {
				t.Helper()
				st, err := c.load()
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return st.order[0]
			}
			ref := newTestControl(t)
			if err := sc.prep(ref); err != nil {
				t.Fatal(err)
			}
			oldBoot := decision(ref)
			oldSt, err := ref.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := sc.step(ref); err != nil {
				t.Fatal(err)
			}
			newBoot := decision(ref)
			newSt, _ := ref.Status(ctx)
			for n := 0; ; n++ {
				c := newTestControl(t)
				if err := sc.prep(c); err != nil {
					t.Fatal(err)
				}
				ops := 0
				c.afterOp = func() error {
					ops++
					if ops > n {
						return errCut
					}
					return nil
				}
				err := sc.step(c)
				c.afterOp = nil
				if err == nil {
					if got, _ := c.Status(ctx); !reflect.DeepEqual(got, newSt) {
						t.Errorf("cut after %d ops never hit, status %+v, want %+v", n, got, newSt)
					}
					break
				}
				if !errors.Is(err, errCut) {
					t.Fatalf("cut after %d ops: %v", n, err)
				}
				if got := decision(c); got != oldBoot && got != newBoot {
					t.Errorf("cut after %d ops: systemd-boot picks %q, want %q or %q (%q)", n, got, oldBoot, newBoot, entryFiles(t, simBoot{c.Control}))
				}
				st, err := c.Status(ctx)
				if err != nil {
					t.Fatalf("cut after %d ops: Status: %v", n, err)
				}
				if st.Primary != oldSt.Primary && st.Primary != newSt.Primary {
					t.Errorf("cut after %d ops: primary %q, want %q or %q", n, st.Primary, oldSt.Primary, newSt.Primary)
				}
				// Redo the step: it completes, and leaves no stale file.
				if err := sc.step(c); err != nil {
					t.Fatalf("cut after %d ops: redo: %v", n, err)
				}
				if got, _ := c.Status(ctx); !reflect.DeepEqual(got, newSt) {
					t.Errorf("cut after %d ops, redone: %+v, want %+v", n, got, newSt)
				}
				for _, f := range entryFiles(t, c) {
					if strings.HasPrefix(f, ".") {
						continue
					}
					if _, err := ParseEntryName(f); err != nil {
						t.Errorf("cut after %d ops: stray file %q", n, f)
					}
				}
				if files := entryFiles(t, c); len(files) > 4 {
					t.Errorf("cut after %d ops, redone: files %q, want one per slot (and the rescue entry)", n, files)
				}
				if n > 20 {
					t.Fatal("the step never completed")
				}
			}
		})
	}
}
