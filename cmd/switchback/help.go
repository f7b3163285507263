package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// defaultConfigPath is where the configuration file is, unless -config
// names another.
const defaultConfigPath = "/etc/switchback/config.json"

const shortUsage = "usage: switchback [-config FILE] [-v] COMMAND [FLAGS] [ARGS]  (switchback -h for help)\n"

// printUsage is `switchback -h`: the commands, the global flags, the exit
// statuses and the configuration file.
func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, "usage: switchback [-config FILE] [-v] COMMAND [FLAGS] [ARGS]\n\n")
	fmt.Fprint(w, "The device tool of switchback: a thin shell over the updater and the boot backends.\n\n")
	fmt.Fprint(w, "commands (switchback COMMAND -h for the flags of each):\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "relay", "serve a verified TUF mirror to the edge devices behind this gateway (relay -h)")
	fmt.Fprint(w, "  help [COMMAND|config]\n\n")
	printGlobalFlags(w, global)
	fmt.Fprint(w, "\n"+exitHelp+"\n"+configHelp)
}

// printCommandHelp is `switchback COMMAND -h`.
func printCommandHelp(w io.Writer, c subcommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: switchback [-config FILE] [-v] %s %s\n\n", c.name, c.synopsis)
	fmt.Fprint(w, c.detail)
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if flags.Len() > 0 {
		fmt.Fprint(w, "\nflags:\n"+flags.String())
	}
	fmt.Fprintf(w, "\nglobal flags:\n  -config FILE\n    \tconfiguration file (default %s)\n  -v\tlog the updater's steps to stderr\n", defaultConfigPath)
	fmt.Fprint(w, "\n"+exitHelp+"\n"+configHelp)
}

func printGlobalFlags(w io.Writer, global *flag.FlagSet) {
	var b strings.Builder
	global.SetOutput(&b)
	global.PrintDefaults()
	global.SetOutput(io.Discard)
	fmt.Fprint(w, "global flags:\n"+b.String())
}

const exitHelp = `exit status:
  0  done; for check and install also "up to date" (nothing newer is published)
  1  failure: network, verification, storage; for confirm: the trial was rolled back
  2  usage error
  3  configuration: the file, the trusted root, or a factory_version that is not semver
  4  the repository publishes no release of a configured component (misspelt name? other repository?)
  5  releases exist but none for this device: hardware, min_version, or an image (-file)
     of a component this device does not have
  6  the newest release for this device failed here before and is blocklisted (switchback status)
  When the components' reasons differ, the status is the first of 3, 6, 5, 4 that applies.
`

// configHelp is the configuration format, as doc.go gives it (a test keeps
// both complete).
const configHelp = `configuration file (-config, default ` + defaultConfigPath + `), JSON; unknown fields are errors:
  {
    "hardware": "gw-x86-v2",                 // this device's hardware id
    "device_id_file": "/etc/machine-id",      // default; decides the rollout cohort, never sent ("device_id" overrides)
    "channel": "stable",                      // default; releases listing no channel are on every channel
    "state_dir": "/var/lib/switchback",       // default; on persistent local storage
    "root": "/etc/switchback/root.json",      // trusted TUF root shipped with the image
    "metadata_url": "https://updates.example.com/metadata/",
    "targets_url": "https://updates.example.com/targets/",
    "metadata_mirrors": [], "targets_mirrors": [],
    "tries": 3,                               // starts a new version gets (1..9)
    "confirm_timeout": "2m",
    "skip_server_check": false,               // keep false: never commit a version that cannot reach its server
    "external_start_counter": false,          // true when ` + "`switchback guard`" + ` counts starts in ExecStartPre
    "allow_downgrade": false,
    "read_back": false,                       // re-read and re-verify every slot after writing
    "min_time": "2026-11-01T00:00:00Z",       // refuse to judge TUF expiry with a clock before this
    "ca_file": "/etc/switchback/ca.pem",      // trusted CAs for the update server (default: system roots)
    "cert_file": "/etc/switchback/device.pem", "key_file": "/etc/switchback/device.key", // mutual TLS, reloaded on change
    "stall_timeout": "30s", "rate_limit": 0,  // reconnect after 30 s without a byte; bytes/s cap (0: none)
    "low_speed_limit": 1024, "low_speed_time": "30s", // reconnect below 1 KiB/s over 30 s (-1: never)
    "metadata_timeout": "5m",                 // most one metadata file may take per mirror
    "full_refresh_interval": "0s",            // opt-in, not TUF: while the timestamp is unchanged skip the root walk this long
    "target_prefixes": ["rootfs/gw-x86-v2/"], // only targets under these paths: only this device's delegated roles are fetched
    "poll_interval": "1h", "poll_jitter": "6m", // switchback run: time between checks, spread by up to the jitter
    "report": {"url": "https://fleet.example.com/events", // switchback's events, POSTed as JSON (package report); TLS: ca_file, cert_file, key_file
               "dir": "", "source": "gw-0042",          // outbox (default state_dir/report); the name sent in each batch
               "max_records": 10000, "max_bytes": 4194304}, // outbox bounds: the oldest are dropped first, and counted
    "components": [
      {"name": "rootfs", "type": "ab", "factory_version": "1.0.0", "pin": "", // "pin": hold at this version
       "slots": {"a": "PARTLABEL=rootfs-a", "b": "PARTLABEL=rootfs-b"},
       "boot": {"type": "grub", "path": "/boot/grub/grubenv"}},
      {"name": "app", "type": "file", "path": "/opt/gw/bin/gateway", "mode": "0755"},
      {"name": "web", "type": "dir", "path": "/opt/gw/web"}
    ],
    "health": [
      {"http": "http://127.0.0.1:8080/healthz", "timeout": "5s"},
      {"units": ["gateway.service"]},
      {"command": ["/usr/bin/gateway", "--self-test"]},
      {"tcp": "127.0.0.1:1883"},
      {"file": "/run/gateway/ready", "name": "gateway-ready"}
    ]
  }
Component types: "file" (one file, A/B behind an atomic symlink), "dir" (a release
archive unpacked into A/B directories behind a symlink), "ab" (raw partitions named by
path, PARTUUID= or PARTLABEL=, switched by a bootloader: "grub" with the grubenv path,
"uboot" with the path of an fw_env.config (default /etc/fw_env.config), or "sdboot"
with the ESP mount point; "cmdline" and "runtime_dir" in "boot" are for tests and
chroots). Each health entry sets exactly one of http, tcp, command, units, file; name
and timeout are optional. The comments above are for reading only: JSON has none.
`

// The details of each command, for its -h.
const (
	statusHelp = `Prints each component: the installed version, the booted and primary slot, a
trial and its tries left, slots marked bad, what each slot holds, a pending
install and the last result; then the blocklist. Needs no network.
`
	checkHelp = `Refreshes the trusted TUF metadata from metadata_url and lists the release
each component may install. Says "up to date" (exit 0) only when nothing newer
is published; when releases exist that this device may not take, it says why
with its own exit status (4, 5, 6 below).
`
	installHelp = `Installs the newest release of each component (as check finds it) into its
inactive slot, verified against the signed length and hashes, and arms it: a
reboot (partitions) or a restart of the application (file, dir) tries it. An
interrupted install resumes where it stopped. On a terminal, a progress line
shows how far it is; otherwise a line every 10%.
`
	confirmHelp = `Run at the start of a version on trial (the boot-assessment unit runs it):
runs the health checks within confirm_timeout, commits the version when they
pass, marks it bad and rolls back when they fail (exit 1: restart now). A
fallback the bootloader already made is recorded and exits 0.
`
	markGoodHelp = `Commits the running slot without health checks.
`
	markBadHelp = `Marks a slot bad: the primary slot runs at the next start.
`
	rollbackHelp = `Marks the running slot bad: the other slot runs at the next start.
`
	envHelp = `env get [-component C] [NAME...] prints the bootloader environment (all of it
without names); env set [-component C] NAME=VALUE... writes variables in one
atomic update. For "ab" components with "grub" or "uboot".
`
	runHelp = `Runs the updater until stopped (SIGTERM, SIGINT): confirms a version on
trial, then checks and installs updates every poll_interval (default 1h),
spread by up to poll_jitter (default a tenth of it); failures back off from 10 s
up to poll_interval. With a "report" section, every event is stored in the
outbox and sent to report.url as it happens (other commands send what they
stored when they end, for up to 5 s). Exits 0 when stopped, or when a new
version is armed or a failed one rolled back: restart (the device, or the
application) to go on.
`
	guardHelp = `Run as ExecStartPre= of an application on trial ("external_start_counter":
true): counts one start; after "tries" starts without a commit it puts the
previous version back. Needs no network and no trusted metadata.
`
)
