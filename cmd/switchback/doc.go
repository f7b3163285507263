// Command switchback is the device tool: a thin shell over the updater and
// the boot backends, for operators, scripts and systemd units.
//
//	switchback [-config FILE] [-v] COMMAND [ARGS]
//
// Commands: status, check, install [-file IMAGE], confirm, mark-good,
// mark-bad [-slot S], rollback, env get|set, run, guard -component C.
// `switchback -h` lists them with the flags, the exit statuses and this
// configuration format; `switchback COMMAND -h` details one command.
//
// # Exit status
//
// check and install say why nothing was installed, each reason with its
// own status:
//
//	0  done; for check and install also "up to date" (nothing newer is published)
//	1  failure: network, verification, storage; for confirm: the trial was rolled back
//	2  usage error
//	3  configuration: the file, the trusted root, or a factory_version that is not semver
//	4  the repository publishes no release of a configured component
//	5  releases exist but none for this device: hardware, min_version, or an image
//	   (-file) of a component this device does not have
//	6  the newest release for this device failed here before and is blocklisted
//
// When the components' reasons differ, the status is the first of 3, 6, 5,
// 4 that applies.
//
// One process at a time writes the state directory: every command except
// env get takes its lock, waits up to 5 s for another
// holder, then fails with "state dir DIR in use by PID n".
//
// # Configuration
//
// A JSON file, /etc/switchback/config.json by default, of at most 1 MiB
// holding one JSON object. Unknown fields are errors, so that a typo never
// silently drops a setting; so are negative durations and limits (except
// full_refresh_interval, where negative means "always full").
//
//	{
//	  "hardware": "gw-x86-v2",                 // this device's hardware id
//	  "device_id_file": "/etc/machine-id",      // default; decides the rollout cohort, never sent ("device_id" overrides)
//	  "channel": "stable",                      // default; releases listing no channel are on every channel
//	  "state_dir": "/var/lib/switchback",       // default; on persistent local storage
//	  "root": "/etc/switchback/root.json",      // trusted TUF root shipped with the image
//	  "metadata_url": "https://updates.example.com/metadata/",
//	  "targets_url": "https://updates.example.com/targets/",
//	  "metadata_mirrors": [], "targets_mirrors": [],
//	  "tries": 3,                               // starts a new version gets (1..9)
//	  "confirm_timeout": "2m",
//	  "skip_server_check": false,               // keep false: never commit a version that cannot reach its server
//	  "external_start_counter": false,          // true when `switchback guard` counts starts in ExecStartPre
//	  "allow_downgrade": false,
//	  "read_back": false,                       // re-read and re-verify every slot after writing
//	  "min_time": "2026-11-01T00:00:00Z",       // refuse to judge TUF expiry with a clock before this
//	  "ca_file": "/etc/switchback/ca.pem",      // trusted CAs for the update server (default: system roots)
//	  "cert_file": "/etc/switchback/device.pem", "key_file": "/etc/switchback/device.key", // mutual TLS, reloaded on change
//	  "stall_timeout": "30s", "rate_limit": 0,  // reconnect after 30 s without a byte; bytes/s cap (0: none)
//	  "low_speed_limit": 1024, "low_speed_time": "30s", // reconnect below 1 KiB/s over 30 s (-1: never)
//	  "metadata_timeout": "5m",                 // most one metadata file may take per mirror
//	  "full_refresh_interval": "0s",            // opt-in, not TUF: while the timestamp is unchanged skip the root walk this long
//	  "target_prefixes": ["rootfs/gw-x86-v2/"], // only targets under these paths: only this device's delegated roles are fetched
//	  "poll_interval": "1h", "poll_jitter": "6m", // switchback run: time between checks, spread by up to the jitter
//	  "report": {"url": "https://fleet.example.com/events", // switchback's events, POSTed as JSON (package report); TLS: ca_file, cert_file, key_file
//	             "dir": "", "source": "gw-0042",          // outbox (default state_dir/report); the name sent in each batch
//	             "max_records": 10000, "max_bytes": 4194304}, // outbox bounds: the oldest are dropped first, and counted
//	  "components": [
//	    {"name": "rootfs", "type": "ab", "factory_version": "1.0.0", "pin": "", // "pin": hold at this version
//	     "slots": {"a": "PARTLABEL=rootfs-a", "b": "PARTLABEL=rootfs-b"},
//	     "boot": {"type": "grub", "path": "/boot/grub/grubenv"}},
//	    {"name": "app", "type": "file", "path": "/opt/gw/bin/gateway", "mode": "0755"},
//	    {"name": "web", "type": "dir", "path": "/opt/gw/web"}
//	  ],
//	  "health": [
//	    {"http": "http://127.0.0.1:8080/healthz", "timeout": "5s"},
//	    {"units": ["gateway.service"]},
//	    {"command": ["/usr/bin/gateway", "--self-test"]},
//	    {"tcp": "127.0.0.1:1883"},
//	    {"file": "/run/gateway/ready", "name": "gateway-ready"}
//	  ]
//	}
//
// Component types: "file" (one file, A/B behind an atomic symlink), "dir"
// (a release archive unpacked into A/B directories behind a symlink), "ab"
// (raw partitions named by path, PARTUUID= or PARTLABEL=, switched by a
// bootloader: "grub" with the grubenv path, "uboot" with the path of an
// fw_env.config (default /etc/fw_env.config), or "sdboot" with the ESP
// mount point; "cmdline" and "runtime_dir" in "boot" are for tests and
// chroots). Each health entry sets exactly one of http, tcp, command,
// units, file; name and timeout are optional. The comments above are for
// reading only: JSON has none.
package main
