package health

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/dbus"
)

// UnitStater reports the state of systemd units by exact name, including
// units that are not loaded or do not exist. *dbus.Conn from
// github.com/coreos/go-systemd/v22/dbus satisfies it (systemd 230 or
// later).
type UnitStater interface {
	ListUnitsByNamesContext(ctx context.Context, units []string) ([]dbus.UnitStatus, error)
}

// SystemdOption configures the [SystemdUnits] check. An [Option] is a
// SystemdOption.
type SystemdOption interface{ applySystemd(*unitsCheck) }

type systemdOption func(*unitsCheck)

func (o systemdOption) applySystemd(u *unitsCheck) { o(u) }
func (o Option) applySystemd(u *unitsCheck)        { o(&u.base) }

// WithUnitStater asks s for the units' states instead of connecting to the
// system bus on each run: to share a connection, or to test.
func WithUnitStater(s UnitStater) SystemdOption {
	return systemdOption(func(u *unitsCheck) { u.stater = s })
}

type unitsCheck struct {
	base
	units  []string
	stater UnitStater
}

// SystemdUnits returns a check that passes when every unit in units is
// loaded and active (or reloading) — not failed, inactive, activating or
// missing. A name without a unit suffix gets ".service", as systemctl does.
// Unless [WithUnitStater] is given, each run connects to the system bus
// (go-systemd's dbus package) and closes the connection afterwards. The
// error names every unit that is not active, with its states. Its default
// name is "systemd:" + the units, comma-separated.
func SystemdUnits(units []string, opts ...SystemdOption) HealthCheck {
	u := &unitsCheck{units: make([]string, len(units))}
	for i, name := range units {
		u.units[i] = unitName(name)
	}
	u.base = newBase("systemd:"+strings.Join(u.units, ","), DefaultTimeout)
	for _, o := range opts {
		if o != nil {
			o.applySystemd(u)
		}
	}
	return u.finish(u.check)
}

// unitSuffixes are the unit types systemctl recognises in a name.
var unitSuffixes = []string{".service", ".socket", ".target", ".device", ".mount", ".automount",
	".swap", ".timer", ".path", ".slice", ".scope"}

func unitName(name string) string {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			return name
		}
	}
	if name == "" {
		return name
	}
	return name + ".service"
}

func (u *unitsCheck) check(ctx context.Context) error {
	if len(u.units) == 0 {
		return errors.New("no systemd units given")
	}
	for _, name := range u.units {
		if name == "" {
			return errors.New("empty systemd unit name")
		}
	}
	stater := u.stater
	if stater == nil {
		conn, err := dbus.NewSystemConnectionContext(ctx)
		if err != nil {
			return fmt.Errorf("connect to the systemd system bus: %w", err)
		}
		defer conn.Close()
		stater = conn
	}
	statuses, err := stater.ListUnitsByNamesContext(ctx, u.units)
	if err != nil {
		return fmt.Errorf("list units %s: %w", strings.Join(u.units, ", "), err)
	}
	return unitsHealthy(u.units, statuses)
}

// unitsHealthy reports every unit of want that is not loaded and active
// according to statuses.
func unitsHealthy(want []string, statuses []dbus.UnitStatus) error {
	byName := make(map[string]dbus.UnitStatus, len(statuses))
	for _, s := range statuses {
		byName[s.Name] = s
	}
	var errs []error
	for _, name := range want {
		s, ok := byName[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: no status reported", name))
		case s.LoadState == "not-found":
			errs = append(errs, fmt.Errorf("%s: no such unit", name))
		case s.LoadState != "loaded":
			errs = append(errs, fmt.Errorf("%s: load state %s", name, s.LoadState))
		case s.ActiveState == "active" || s.ActiveState == "reloading":
		default:
			errs = append(errs, fmt.Errorf("%s: %s (%s), want active", name, s.ActiveState, s.SubState))
		}
	}
	return errors.Join(errs...)
}
