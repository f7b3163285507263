package updater

import (
	"bytes"
	"log/slog"
	"os"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// DefaultDeviceIDFile is where the device id is read when
// Config.DeviceID is "".
const DefaultDeviceIDFile = "/etc/machine-id"

// policy is the selection policy for component c with this installed
// version: hardware, blocklist, downgrade, and the signed rollout,
// channel and pin rules, judged at the updater's clock (which the TUF
// refresh has checked against MinTime).
func (u *Updater) policy(c *Component, installed string) verify.Policy {
	return verify.Policy{
		Component:      c.release(),
		Hardware:       c.hardware(&u.cfg),
		Installed:      installed,
		AllowDowngrade: u.cfg.AllowDowngrade,
		Blocked:        u.st.blockedFor(c.Name),
		DeviceID:       u.deviceID,
		Now:            u.trustedNow(),
		Channel:        u.cfg.Channel,
		Pin:            c.Pin,
	}
}

// trustedNow is the clock, or zero while it reads before MinTime (unset):
// a release under a rollout is then not taken.
func (u *Updater) trustedNow() (now time.Time) {
	now = u.now()
	if now.Before(u.cfg.MinTime) {
		return time.Time{}
	}
	return now
}

// deviceID returns cfg.DeviceID or the trimmed content of the device id
// file; "" (logged) when it cannot be read.
func deviceID(cfg Config, log *slog.Logger) string {
	if cfg.DeviceID != "" {
		return cfg.DeviceID
	}
	file := cfg.DeviceIDFile
	if file == "" {
		file = DefaultDeviceIDFile
	}
	b, err := os.ReadFile(file)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		log.Warn("no device id: releases under a staged rollout wait until it reaches 100%", "file", file, "err", err)
		return ""
	}
	return string(bytes.TrimSpace(b))
}
