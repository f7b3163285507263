package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/switchback-ota/switchback/health"
)

// Systemd runs the image of a [Component]'s booted slot as a systemd
// service: its Restart hook writes a unit that runs `runc run` on the
// slot's bundle (in the foreground, so that systemd supervises the
// container and the journal gets its output), reloads systemd when the
// unit changed and restarts the unit, through systemd's D-Bus API
// (go-systemd). It is the alternative to [Runc] on a device whose init is
// systemd. Restart and HealthCheck connect to the system bus on each call
// (DBUS_SYSTEM_BUS_ADDRESS, default /run/dbus/system_bus_socket); they
// need root, as runc and systemd's unit directory do.
type Systemd struct {
	// Component is the component whose booted slot runs.
	Component *Component
	// ID names the container and its unit, ID + ".service"
	// ("gateway-app"); letters, digits and "_.+-".
	ID string
	// UnitDir is where the unit is written; "" is /etc/systemd/system.
	UnitDir string
	// Runc is the runc executable the unit runs; "" looks "runc" up in
	// PATH when the unit is written (systemd wants an absolute path).
	Runc string
	// Check, when set, is a command run inside the container by
	// HealthCheck; its exit status 0 means healthy.
	Check []string
}

// validID is what a container ID and unit name prefix may hold.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// Unit is the name of the service unit: ID + ".service".
func (s *Systemd) Unit() string { return s.ID + ".service" }

// UnitPath is the file the unit is written to.
func (s *Systemd) UnitPath() string {
	dir := s.UnitDir
	if dir == "" {
		dir = "/etc/systemd/system"
	}
	return filepath.Join(dir, s.Unit())
}

func (s *Systemd) runcPath() (string, error) {
	if s.Runc != "" {
		return s.Runc, nil
	}
	p, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("oci: systemd unit: %w", err)
	}
	return filepath.Abs(p)
}

// Restart points the unit at the booted slot's bundle and (re)starts it,
// waiting for systemd's job to finish; when the booted slot holds no
// image, the unit is stopped. It is the Config.Restart hook of the
// updater for this component (the component name is not needed).
func (s *Systemd) Restart(ctx context.Context, _ string) error {
	if !validID.MatchString(s.ID) {
		return fmt.Errorf("oci: systemd: container ID %q: want letters, digits and _.+-", s.ID)
	}
	st, err := s.Component.Status(ctx)
	if err != nil {
		return err
	}
	conn, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("oci: systemd: connect to the system bus: %w", err)
	}
	defer conn.Close()
	if !s.Component.HasImage(st.Booted) {
		if _, err := os.Stat(s.UnitPath()); err != nil {
			return nil // never written: nothing runs
		}
		return s.job(ctx, "stop", conn.StopUnitContext)
	}
	runc, err := s.runcPath()
	if err != nil {
		return err
	}
	unit := renderUnit(s.ID, runc, s.Component.Bundle(st.Booted), st.Booted)
	changed, err := writeIfChanged(s.UnitPath(), unit)
	if err != nil {
		return fmt.Errorf("oci: systemd unit: %w", err)
	}
	if changed {
		if err := conn.ReloadContext(ctx); err != nil {
			return fmt.Errorf("oci: systemd daemon-reload: %w", err)
		}
	}
	return s.job(ctx, "restart", conn.RestartUnitContext)
}

// job runs one systemd job on the unit and waits for its result.
func (s *Systemd) job(ctx context.Context, what string, start func(context.Context, string, string, chan<- string) (int, error)) error {
	done := make(chan string, 1)
	if _, err := start(ctx, s.Unit(), "replace", done); err != nil {
		return fmt.Errorf("oci: systemd %s %s: %w", what, s.Unit(), err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("oci: systemd %s %s: job %s", what, s.Unit(), res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("oci: systemd %s %s: %w", what, s.Unit(), ctx.Err())
	}
}

// renderUnit is the service unit that runs the container id from bundle.
// runc runs in the foreground (Type=simple): systemd supervises it and
// the container's output goes to the journal. Restart=on-failure restarts
// a committed container that crashes; a trial that crashes on start still
// fails its health check, which wants the unit active and the container
// running and answering.
func renderUnit(id, runc, bundle, slot string) []byte {
	r, b, i := quoteArg(runc), quoteArg(bundle), quoteArg(id)
	var u bytes.Buffer
	fmt.Fprintf(&u, "# Written by switchback (oci.Systemd) at each update: the container of slot %s.\n", slot)
	fmt.Fprintf(&u, "[Unit]\nDescription=Container %s (switchback slot %s)\n", id, slot)
	u.WriteString("Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=simple\n")
	fmt.Fprintf(&u, "ExecStartPre=-%s delete --force %s\n", r, i)
	fmt.Fprintf(&u, "ExecStart=%s run --bundle %s %s\n", r, b, i)
	fmt.Fprintf(&u, "ExecStop=%s kill %s KILL\n", r, i)
	fmt.Fprintf(&u, "ExecStopPost=-%s delete --force %s\n", r, i)
	u.WriteString("Restart=on-failure\nRestartSec=2s\n\n[Install]\nWantedBy=multi-user.target\n")
	return u.Bytes()
}

// plainArg is what a unit's command line may hold unquoted.
var plainArg = regexp.MustCompile(`^[A-Za-z0-9/._:@+,=%-]+$`)

// quoteArg quotes a word of an Exec= line for systemd: specifiers (%) and
// variables ($) are escaped, and anything but plain characters is put in
// double quotes with backslashes and quotes escaped.
func quoteArg(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if plainArg.MatchString(s) {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// writeIfChanged writes data to path durably unless it holds data already,
// and reports whether it wrote.
func writeIfChanged(path string, data []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, writeDurable(path, data)
}

// HealthCheck returns a check (a health.HealthCheck) that the unit is
// loaded and active, and that the container runs and answers its own
// check, as [Runc.HealthCheck] does.
func (s *Systemd) HealthCheck() *SystemdCheck {
	runc, _ := s.runcPath() // "" when missing: the check then fails
	if runc == "" {
		runc = "runc"
	}
	return &SystemdCheck{s: s, unit: health.SystemdUnits([]string{s.Unit()}),
		container: (&Runc{ID: s.ID, Binary: runc, Check: s.Check}).HealthCheck()}
}

// SystemdCheck is the check [Systemd.HealthCheck] returns.
type SystemdCheck struct {
	s         *Systemd
	unit      health.HealthCheck
	container *RuncCheck
}

// Name is "systemd-oci:<unit>".
func (c *SystemdCheck) Name() string { return "systemd-oci:" + c.s.Unit() }

// Check fails unless systemd reports the unit active and the container
// runs and answers its own check.
func (c *SystemdCheck) Check(ctx context.Context) error {
	if err := c.unit.Check(ctx); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return c.container.Check(ctx)
}
