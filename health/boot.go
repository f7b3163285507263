package health

import (
	"context"
	"errors"
	"fmt"
)

// BootAssessment is the body of the boot-assessment unit: the device CLI's
// `switchback confirm` runs it in a Type=oneshot unit ordered
// Before=boot-complete.target and required by it (see
// examples/systemd/switchback-boot-assessment.service).
//
// confirm is the updater's confirmation: on a trial version it runs the
// health checks within its deadline and then commits, or marks the slot bad
// and arms the rollback; on an already committed version it has nothing to
// do and returns nil. BootAssessment reports progress as the unit's STATUS=
// through n (nil is fine; outside systemd nothing is sent) and returns
// confirm's error, wrapped.
//
// The exit-status contract the unit relies on: the CLI exits 0 when
// BootAssessment returns nil, so boot-complete.target is reached and
// systemd-bless-boot (where used) blesses the boot entry; it exits non-zero
// otherwise, so the target is not reached, and the unit's
// FailureAction=reboot boots the previous slot.
func BootAssessment(ctx context.Context, n *Notifier, confirm func(ctx context.Context) error) error {
	if confirm == nil {
		return errors.New("boot assessment: nil confirm function")
	}
	_ = n.Status("assessing this boot: running health checks")
	if err := confirm(ctx); err != nil {
		_ = n.Status("boot assessment failed: " + err.Error())
		return fmt.Errorf("boot assessment: %w", err)
	}
	_ = n.Status("boot assessment passed")
	return nil
}
