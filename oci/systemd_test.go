package oci

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/internal/testkit/dbustest"
	"github.com/switchback-ota/switchback/verify"
)

// fakeSystemd plays systemd's org.freedesktop.systemd1.Manager on a
// private bus, for go-systemd's real client: Reload reads the unit files
// of its directory, RestartUnit and StopUnit run the unit's Exec lines
// the way systemd does for a Type=simple service (ExecStop, then
// ExecStopPost, then ExecStartPre, then ExecStart as the main process,
// whose exit makes the unit inactive, or failed with a non-zero status)
// and announce the job's end with the JobRemoved signal;
// ListUnitsByNames reports the states. Restart= is not played: a unit
// whose process exits stays failed. Lines are split on spaces (the tests'
// paths have none); a leading "-" ignores a failure.
type fakeSystemd struct {
	conn *godbus.Conn
	dir  string

	mu     sync.Mutex
	files  map[string]map[string][]string // unit → key → values, as of the last Reload
	units  map[string]*fakeUnit
	jobs   int
	calls  []string
	output bytes.Buffer // of every command run
}

type fakeUnit struct {
	active, sub string
	main        *exec.Cmd
	exited      chan struct{}
}

// startFakeSystemd owns org.freedesktop.systemd1 on a private bus and
// points go-systemd's system bus connection at it.
func startFakeSystemd(t *testing.T, dir string) *fakeSystemd {
	t.Helper()
	addr := dbustest.PrivateBus(t)
	conn, err := godbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to the private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeSystemd{conn: conn, dir: dir, files: map[string]map[string][]string{}, units: map[string]*fakeUnit{}}
	if err := conn.Export(f, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue); err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning org.freedesktop.systemd1: %v, %v", reply, err)
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	t.Cleanup(func() {
		f.mu.Lock()
		names := make([]string, 0, len(f.units))
		for n := range f.units {
			names = append(names, n)
		}
		f.mu.Unlock()
		for _, n := range names {
			f.stop(n)
		}
	})
	return f
}

// Reload is daemon-reload: it reads every unit file of the directory.
func (f *fakeSystemd) Reload() *godbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Reload")
	paths, _ := filepath.Glob(filepath.Join(f.dir, "*.service"))
	f.files = map[string]map[string][]string{}
	for _, p := range paths {
		kv := map[string][]string{}
		b, err := os.ReadFile(p)
		if err != nil {
			return godbus.MakeFailedError(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
				kv[k] = append(kv[k], v)
			}
		}
		f.files[filepath.Base(p)] = kv
	}
	return nil
}

// RestartUnit stops the unit if it runs, then starts it.
func (f *fakeSystemd) RestartUnit(name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return f.startJob("RestartUnit "+name, func() string {
		f.stop(name)
		return f.start(name)
	})
}

// StopUnit stops the unit.
func (f *fakeSystemd) StopUnit(name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return f.startJob("StopUnit "+name, func() string { f.stop(name); return "done" })
}

// startJob runs do in the background, as systemd runs a job, and emits
// JobRemoved with its result.
func (f *fakeSystemd) startJob(call string, do func() string) (godbus.ObjectPath, *godbus.Error) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.jobs++
	id := f.jobs
	f.mu.Unlock()
	path := godbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	go func() {
		res := do()
		f.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved",
			uint32(id), path, strings.Fields(call)[1], res)
	}()
	return path, nil
}

// exec runs one Exec line to its end; "-" ignores its failure.
func (f *fakeSystemd) exec(line string) error {
	ignore := strings.HasPrefix(line, "-")
	args := strings.Fields(strings.TrimPrefix(line, "-"))
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	f.mu.Lock()
	f.output.Write(out)
	f.mu.Unlock()
	if ignore {
		return nil
	}
	return err
}

func (f *fakeSystemd) start(name string) string {
	f.mu.Lock()
	kv, ok := f.files[name]
	f.mu.Unlock()
	if !ok || len(kv["ExecStart"]) != 1 {
		return "failed"
	}
	for _, l := range kv["ExecStartPre"] {
		if err := f.exec(l); err != nil {
			return "failed"
		}
	}
	args := strings.Fields(kv["ExecStart"][0])
	u := &fakeUnit{active: "active", sub: "running", main: exec.Command(args[0], args[1:]...), exited: make(chan struct{})}
	if err := u.main.Start(); err != nil {
		return "failed"
	}
	f.mu.Lock()
	f.units[name] = u
	f.mu.Unlock()
	go func() {
		err := u.main.Wait()
		f.mu.Lock()
		u.active, u.sub = "inactive", "dead"
		if err != nil {
			u.active, u.sub = "failed", "failed"
		}
		f.mu.Unlock()
		close(u.exited)
	}()
	return "done"
}

// stop runs ExecStop, waits for the main process (SIGKILL after 10 s, as
// systemd does after TimeoutStopSec), then runs ExecStopPost.
func (f *fakeSystemd) stop(name string) {
	f.mu.Lock()
	u, kv := f.units[name], f.files[name]
	f.mu.Unlock()
	if u == nil {
		return
	}
	for _, l := range kv["ExecStop"] {
		f.exec(l)
	}
	select {
	case <-u.exited:
	case <-time.After(10 * time.Second):
		u.main.Process.Kill()
		<-u.exited
	}
	for _, l := range kv["ExecStopPost"] {
		f.exec(l)
	}
}

// ListUnitsByNames reports the units' states as systemd does.
func (f *fakeSystemd) ListUnitsByNames(names []string) ([]fakeUnitTuple, *godbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fakeUnitTuple, 0, len(names))
	for _, n := range names {
		tu := fakeUnitTuple{Name: n, LoadState: "not-found", ActiveState: "inactive", SubState: "dead",
			Path: "/org/freedesktop/systemd1/unit/x", JobPath: "/"}
		if _, ok := f.files[n]; ok {
			tu.LoadState = "loaded"
		}
		if u := f.units[n]; u != nil {
			tu.ActiveState, tu.SubState = u.active, u.sub
		}
		out = append(out, tu)
	}
	return out, nil
}

// fakeUnitTuple is one element of ListUnitsByNames's a(ssssssouso) reply.
type fakeUnitTuple struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          godbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       godbus.ObjectPath
}

// TestSystemdTrial is TestRuncTrial with the systemd hook: the hook
// writes a unit running `runc run` on the booted slot's bundle, reloads
// and restarts it over go-systemd's D-Bus client; the check reads the
// unit's state over D-Bus and runs the container's own check. v1 runs and
// answers; v2 crashes on start, its unit fails and so does the check; it
// is marked bad and v1 runs again from its own bundle. systemd itself
// cannot run here (PID 1 is not systemd), so a stand-in on a private bus
// plays its manager (see fakeSystemd); the unit file is checked by
// systemd's own parser in TestSystemdUnitVerify.
func TestSystemdTrial(t *testing.T) {
	bb := needRunc(t)
	host := testRegistry(t)
	ctx := context.Background()
	unitDir := t.TempDir()
	sd := startFakeSystemd(t, unitDir)
	repo := randomName("test/systemd-")
	base := busyboxLayer(t, bb)
	good := pushImage(t, host, repo, "v1", []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}, base)
	bad := pushImage(t, host, repo, "v2", []string{"/bin/busybox", "false"}, base)
	c := newTestComponent(t, host, verify.OCI{Repository: repo})
	s := &Systemd{Component: c, ID: randomName("sb-sd-"), UnitDir: unitDir, Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
	check := s.HealthCheck()

	start := func(want bool) string {
		t.Helper()
		if _, err := c.CountStart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Restart(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		if err := waitCheck(ctx, check, want); (err == nil) != want {
			sd.mu.Lock()
			defer sd.mu.Unlock()
			t.Fatalf("check: %v, want healthy %v; commands said:\n%s", err, want, sd.output.String())
		}
		st, _ := c.Status(ctx)
		unit, _ := os.ReadFile(s.UnitPath())
		if want := "run --bundle " + c.Bundle(st.Booted) + " " + s.ID + "\n"; !strings.Contains(string(unit), want) {
			t.Errorf("the unit does not run slot %s's bundle (%q):\n%s", st.Booted, want, unit)
		}
		return st.Booted
	}
	v1, err := armTrial(t, c, good.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if got := start(true); got != v1 {
		t.Fatalf("booted %s, want %s", got, v1)
	}
	if err := c.Commit(ctx, v1); err != nil {
		t.Fatal(err)
	}
	v2, err := armTrial(t, c, bad.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if got := start(false); got != v2 {
		t.Fatalf("booted %s, want %s", got, v2)
	}
	if err := c.MarkBad(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if got := start(true); got != v1 {
		t.Errorf("after the rollback %s runs, want %s", got, v1)
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	want := "Reload, RestartUnit " + s.Unit() + ", Reload, RestartUnit " + s.Unit() + ", Reload, RestartUnit " + s.Unit()
	if got := strings.Join(sd.calls, ", "); got != want {
		t.Errorf("systemd was asked: %s; want %s", got, want)
	}
}

func TestQuoteArg(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/sbin/runc", "/usr/sbin/runc"},
		{"gateway-app", "gateway-app"},
		{"/var/lib/my app/bundles/a", `"/var/lib/my app/bundles/a"`},
		{`/odd"dir\x`, `"/odd\"dir\\x"`},
		{"/data/100%/a", "/data/100%%/a"},
		{"/data/$HOME", `"/data/$$HOME"`},
	}
	for _, tt := range tests {
		if got := quoteArg(tt.in); got != tt.want {
			t.Errorf("quoteArg(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestSystemdUnitVerify has systemd's own parser (systemd-analyze verify)
// read the unit the hook writes, for plain paths and for paths that need
// quoting and escaping, and fails on any complaint.
func TestSystemdUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		ci.Skipf(t, "systemd-analyze not found: %v", err)
	}
	runc, err := exec.LookPath("true") // verify wants the program to exist
	if err != nil {
		t.Skip("no true program")
	}
	dir := t.TempDir()
	for i, bundle := range []string{"/var/lib/gateway/app/bundles/a", `/var/lib/my "app" 100%/bundles/b`} {
		p := filepath.Join(dir, fmt.Sprintf("app%d.service", i))
		if err := os.WriteFile(p, renderUnit("gateway-app", runc, bundle, "a"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(analyze, "verify", "--man=no", p)
		cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_LOG_COLOR=0")
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify of the unit for %q: %v\n%s", bundle, err, out)
		}
	}
}
