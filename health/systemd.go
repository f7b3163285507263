package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells systemd how the service is doing through the sd_notify
// protocol (go-systemd's daemon package): READY=1 once confirmation is done,
// STATUS= with the update state, WATCHDOG=1 while healthy. Outside systemd
// — no NOTIFY_SOCKET in the environment — every method is a silent no-op,
// as go-systemd reports it. Notifier never unsets NOTIFY_SOCKET,
// WATCHDOG_USEC or WATCHDOG_PID, so child processes that should not notify
// must be started with a cleaned environment by the caller.
//
// The zero value is ready to use; a nil *Notifier is too. A Notifier is
// safe for concurrent use.
type Notifier struct {
	// Logger receives the watchdog's send errors; nil discards them.
	Logger *slog.Logger
}

// Enabled reports whether the process runs under a service manager that
// listens for notifications (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Notify sends states, one "KEY=value" per entry, in a single datagram.
func (n *Notifier) Notify(states ...string) error {
	if len(states) == 0 {
		return nil
	}
	_, err := daemon.SdNotify(false, strings.Join(states, "\n"))
	return err
}

// Ready tells systemd that start-up is complete (READY=1): for a
// Type=notify unit, after the new version has been confirmed.
func (n *Notifier) Ready() error { return n.Notify(daemon.SdNotifyReady) }

// Stopping tells systemd that the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Notify(daemon.SdNotifyStopping) }

// Status sets the one-line status systemctl status shows (STATUS=...);
// line breaks in s become spaces.
func (n *Notifier) Status(s string) error {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	return n.Notify("STATUS=" + s)
}

// Watchdog pings systemd's watchdog (WATCHDOG=1) at half the unit's
// WatchdogSec= interval for as long as ctx lasts, but only while healthy
// returns true: when healthy reports false — the main loop stalled, say —
// pings stop and systemd kills and restarts the service after WatchdogSec,
// which counts as a failed start of a trial version. healthy must be quick;
// it is called once per interval.
//
// Watchdog returns nil at once when the watchdog is not enabled for this
// process (no NOTIFY_SOCKET, no WATCHDOG_USEC, or WATCHDOG_PID names
// another process), nil when ctx ends, and an error only when WATCHDOG_USEC
// is malformed. Errors sending a ping are logged and the loop goes on.
func (n *Notifier) Watchdog(ctx context.Context, healthy func() bool) error {
	if healthy == nil {
		return errors.New("watchdog: nil healthy function")
	}
	if !n.Enabled() {
		return nil
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		if healthy() {
			if err := n.Notify(daemon.SdNotifyWatchdog); err != nil {
				n.logger().WarnContext(ctx, "systemd watchdog ping failed", "err", err)
			}
		} else {
			n.logger().WarnContext(ctx, "unhealthy: not pinging the systemd watchdog")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (n *Notifier) logger() *slog.Logger {
	if n == nil || n.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Logger
}
