// Package systemd holds no code: this directory ships example systemd units
// for devices that run switchback — the update agent (Type=notify with a
// watchdog), the boot-assessment unit ordered before boot-complete.target,
// and an application guarded against crash loops by `switchback guard`.
// README.md explains them; the tests check them with systemd-analyze verify
// and hold them to the contract the README describes.
package systemd
