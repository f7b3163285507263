package health

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/switchback-ota/switchback/internal/testkit/dbustest"
)

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
	addr := dbustest.PrivateBus(t)
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
