package health

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// privateBus starts a dbus-daemon of its own on a socket in a temporary
// directory and returns its address. The daemon is stopped at cleanup.
func privateBus(t *testing.T) string {
	t.Helper()
	daemon := needTool(t, "dbus-daemon")
	dir, err := os.MkdirTemp("", "sbd") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	config := filepath.Join(dir, "bus.conf")
	err = os.WriteFile(config, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+config, "--nofork", "--nopidfile", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v; stderr: %s", err, stderr.String())
	}
	return strings.TrimSpace(line)
}

// unitTuple is one element of ListUnitsByNames's a(ssssssouso) reply.
type unitTuple struct {
	Name, Description, LoadState, ActiveState, SubState, Followed string
	Path                                                          godbus.ObjectPath
	JobID                                                         uint32
	JobType                                                       string
	JobPath                                                       godbus.ObjectPath
}

// fakeManager stands in for systemd's org.freedesktop.systemd1.Manager on
// the bus, answering ListUnitsByNames from a table.
type fakeManager struct {
	mu    sync.Mutex
	units map[string][3]string // load, active, sub
	asked []string
}

func (m *fakeManager) ListUnitsByNames(names []string) ([]unitTuple, *godbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, names...)
	out := make([]unitTuple, 0, len(names))
	for _, n := range names {
		s, ok := m.units[n]
		if !ok {
			s = [3]string{"not-found", "inactive", "dead"}
		}
		out = append(out, unitTuple{Name: n, LoadState: s[0], ActiveState: s[1], SubState: s[2],
			Path: godbus.ObjectPath("/org/freedesktop/systemd1/unit/x"), JobPath: "/"})
	}
	return out, nil
}

// TestSystemdUnitsOverDBus runs the check's real D-Bus path — go-systemd's
// connection to the system bus, the ListUnitsByNames call and the decoding
// of its reply — against a private dbus-daemon on which the test plays
// systemd.
func TestSystemdUnitsOverDBus(t *testing.T) {
	addr := privateBus(t)
	svc, err := godbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to the private bus: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	m := &fakeManager{units: map[string][3]string{
		"app.service":     {"loaded", "active", "running"},
		"crashed.service": {"loaded", "failed", "failed"},
	}}
	if err := svc.Export(m, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	reply, err := svc.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning org.freedesktop.systemd1: %v, %v", reply, err)
	}
	// go-systemd connects to the system bus at this address.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)

	ctx := guard(t)
	if err := SystemdUnits([]string{"app"}).Check(ctx); err != nil {
		t.Errorf("app: got %v, want active", err)
	}
	err = SystemdUnits([]string{"app", "crashed", "gone.service"}).Check(ctx)
	wantErr(t, err, "crashed.service: failed (failed), want active", "gone.service: no such unit")
	m.mu.Lock()
	defer m.mu.Unlock()
	if got, want := strings.Join(m.asked, " "), "app.service app.service crashed.service gone.service"; got != want {
		t.Errorf("systemd was asked about %q, want %q", got, want)
	}
}

func TestSystemdUnitsNoBus(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", fmt.Sprintf("unix:path=%s", filepath.Join(t.TempDir(), "none")))
	err := SystemdUnits([]string{"app"}).Check(context.Background())
	wantErr(t, err, "connect to the systemd system bus")
}
