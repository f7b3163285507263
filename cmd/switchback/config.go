package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/grub"
	"github.com/switchback-ota/switchback/slots/partition"
	"github.com/switchback-ota/switchback/slots/sdboot"
	"github.com/switchback-ota/switchback/slots/uboot"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// fileConfig is the configuration file, JSON. See doc.go for the format.
type fileConfig struct {
	Hardware             string            `json:"hardware"`
	DeviceID             string            `json:"device_id"`
	DeviceIDFile         string            `json:"device_id_file"`
	Channel              string            `json:"channel"`
	StateDir             string            `json:"state_dir"`
	Root                 string            `json:"root"`
	MetadataURL          string            `json:"metadata_url"`
	TargetsURL           string            `json:"targets_url"`
	MetadataMirrors      []string          `json:"metadata_mirrors"`
	TargetsMirrors       []string          `json:"targets_mirrors"`
	Tries                int               `json:"tries"`
	ConfirmTimeout       duration          `json:"confirm_timeout"`
	SkipServerCheck      bool              `json:"skip_server_check"`
	ExternalStartCounter bool              `json:"external_start_counter"`
	AllowDowngrade       bool              `json:"allow_downgrade"`
	ReadBack             bool              `json:"read_back"`
	MinTime              string            `json:"min_time"`
	CAFile               string            `json:"ca_file"`
	CertFile             string            `json:"cert_file"`
	KeyFile              string            `json:"key_file"`
	StallTimeout         duration          `json:"stall_timeout"`
	RateLimit            int64             `json:"rate_limit"`
	LowSpeedLimit        int64             `json:"low_speed_limit"`
	LowSpeedTime         duration          `json:"low_speed_time"`
	MetadataTimeout      duration          `json:"metadata_timeout"`
	FullRefreshInterval  duration          `json:"full_refresh_interval"`
	TargetPrefixes       []string          `json:"target_prefixes"`
	PollInterval         duration          `json:"poll_interval"`
	PollJitter           duration          `json:"poll_jitter"`
	Report               *reportConfig     `json:"report"`
	Components           []componentConfig `json:"components"`
	Health               []healthConfig    `json:"health"`
}

type componentConfig struct {
	Name           string `json:"name"`
	FactoryVersion string `json:"factory_version"`
	// Pin holds the component at this version.
	Pin string `json:"pin"`
	// Type is "file", "dir" or "ab" (A/B partitions with a bootloader).
	Type string `json:"type"`
	// Path is the file or directory, for "file" and "dir".
	Path string `json:"path"`
	// Mode is the file mode of installed files ("0755"), for "file".
	Mode string `json:"mode"`
	// Slots names the partitions of "ab": slot name → device path,
	// PARTUUID=… or PARTLABEL=….
	Slots map[string]string `json:"slots"`
	// Boot is the bootloader of "ab".
	Boot *bootConfig `json:"boot"`
}

type bootConfig struct {
	// Type is "grub", "uboot" or "sdboot".
	Type string `json:"type"`
	// Path is the grubenv file ("grub"), the fw_env.config file
	// ("uboot", default /etc/fw_env.config), or the ESP mount point
	// ("sdboot": loader/entries/switchback-<slot>.conf are the slots).
	Path string `json:"path"`
	// Cmdline is the kernel command line file (default /proc/cmdline);
	// RuntimeDir a directory emptied at every boot (default
	// /run/switchback). Set them only for tests or a chroot.
	Cmdline    string `json:"cmdline"`
	RuntimeDir string `json:"runtime_dir"`
}

type healthConfig struct {
	Name    string   `json:"name"`
	HTTP    string   `json:"http"`
	TCP     string   `json:"tcp"`
	Command []string `json:"command"`
	Units   []string `json:"units"`
	File    string   `json:"file"`
	Timeout duration `json:"timeout"`
}

// duration is a time.Duration written as "90s" in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// parseConfig decodes and checks a configuration file. Unknown fields are
// errors: a typo must not silently drop a setting.
func parseConfig(b []byte) (*fileConfig, error) {
	c, err := decodeConfig(b)
	if err != nil {
		return nil, err
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/switchback"
	}
	if err := errors.Join(c.check()...); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// decodeConfig decodes b, which must hold one JSON object and nothing
// after it, refusing unknown fields.
func decodeConfig(b []byte) (*fileConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c fileConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("config: unexpected data after the JSON object at byte %d", dec.InputOffset())
	}
	return &c, nil
}

// check lists every mistake of the configuration, in the file's words, so
// that one run reports them all.
func (c *fileConfig) check() []error {
	errs := c.checkNumbers()
	if c.Root == "" {
		errs = append(errs, errors.New("root (the trusted root.json) is required"))
	}
	if c.MinTime != "" {
		if _, err := time.Parse(time.RFC3339, c.MinTime); err != nil {
			errs = append(errs, fmt.Errorf("min_time: %w", err))
		}
	}
	if c.Report != nil {
		errs = append(errs, c.Report.check()...)
	}
	if c.Channel != "" && !verify.ValidChannel(c.Channel) {
		errs = append(errs, fmt.Errorf("channel %q must be 1 to 64 of [a-z0-9._-]", c.Channel))
	}
	for i, comp := range c.Components {
		errs = append(errs, comp.check(i)...)
	}
	for i, h := range c.Health {
		errs = append(errs, h.check(i)...)
	}
	return errs
}

// check lists the mistakes of the i-th component, each prefixed with its
// index and name.
func (comp componentConfig) check(i int) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("component %d (%s): %s", i, comp.Name, fmt.Sprintf(format, args...)))
	}
	switch comp.Type {
	case "file", "dir":
		if comp.Path == "" {
			bad("path is required")
		}
	case "ab":
		if len(comp.Slots) < 2 {
			bad("slots needs two partitions")
		}
		switch {
		case comp.Boot == nil:
			bad("boot is required")
		case comp.Boot.Type != "grub" && comp.Boot.Type != "uboot" && comp.Boot.Type != "sdboot":
			bad("boot type %q is not grub, uboot or sdboot", comp.Boot.Type)
		case comp.Boot.Type == "sdboot" && comp.Boot.Path == "":
			bad("sdboot needs path (the ESP mount point)")
		}
	default:
		bad("type %q is not file, dir or ab", comp.Type)
	}
	if comp.Pin != "" && !verify.ValidVersion(comp.Pin) {
		bad("pin %q is not a semantic version", comp.Pin)
	}
	if comp.FactoryVersion != "" && !verify.ValidVersion(comp.FactoryVersion) {
		bad("factory_version %q is not a semantic version", comp.FactoryVersion)
	}
	if comp.Mode != "" {
		if _, err := strconv.ParseUint(comp.Mode, 8, 32); err != nil {
			bad("mode %q is not octal", comp.Mode)
		}
	}
	return errs
}

// check lists the mistakes of the i-th health check.
func (h healthConfig) check(i int) []error {
	var errs []error
	n := 0
	for _, set := range []bool{h.HTTP != "", h.TCP != "", len(h.Command) > 0, len(h.Units) > 0, h.File != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, fmt.Errorf("health %d: set exactly one of http, tcp, command, units, file", i))
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("health %d: timeout %s is negative", i, time.Duration(h.Timeout)))
	}
	return errs
}

// maxConfigSize caps the configuration file: a real one is a few KiB.
const maxConfigSize = 1 << 20

// readConfigFile reads the configuration file, refusing one larger than
// maxConfigSize.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s is larger than %d bytes", path, maxConfigSize)
	}
	return b, nil
}

// checkNumbers refuses negative durations and limits, in the file's words:
// a negative confirm_timeout rolled back every healthy release. A negative
// full_refresh_interval is allowed: it means every check is a full refresh.
func (c *fileConfig) checkNumbers() []error {
	var errs []error
	for _, d := range []struct {
		key string
		v   duration
	}{{"confirm_timeout", c.ConfirmTimeout}, {"stall_timeout", c.StallTimeout},
		{"poll_interval", c.PollInterval}, {"poll_jitter", c.PollJitter}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", d.key, time.Duration(d.v)))
		}
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("rate_limit %d is negative (0 means unlimited)", c.RateLimit))
	}
	if c.Tries < 0 || c.Tries > 9 {
		errs = append(errs, fmt.Errorf("tries %d is out of range 1..9", c.Tries))
	}
	return errs
}

// device is what a configuration builds.
type device struct {
	cfg   *fileConfig
	ucfg  updater.Config
	boots map[string]slots.BootControl
}

// build turns the file configuration into an updater configuration.
func build(c *fileConfig) (*device, error) {
	root, err := os.ReadFile(c.Root)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	d := &device{cfg: c, boots: map[string]slots.BootControl{}}
	u := updater.Config{
		Hardware: c.Hardware, StateDir: c.StateDir, TrustedRoot: root,
		DeviceID: c.DeviceID, DeviceIDFile: c.DeviceIDFile, Channel: c.Channel,
		MetadataURL: c.MetadataURL, TargetsURL: c.TargetsURL,
		MetadataMirrors: c.MetadataMirrors, TargetsMirrors: c.TargetsMirrors,
		Tries: c.Tries, ConfirmTimeout: time.Duration(c.ConfirmTimeout),
		SkipServerCheck: c.SkipServerCheck, ExternalStartCounter: c.ExternalStartCounter,
		AllowDowngrade: c.AllowDowngrade, ReadBack: c.ReadBack,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		StallTimeout: time.Duration(c.StallTimeout), RateLimit: c.RateLimit,
		LowSpeedLimit: c.LowSpeedLimit, LowSpeedTime: time.Duration(c.LowSpeedTime),
		MetadataTimeout:     time.Duration(c.MetadataTimeout),
		FullRefreshInterval: time.Duration(c.FullRefreshInterval),
		TargetPrefixes:      c.TargetPrefixes,
		PollInterval:        time.Duration(c.PollInterval),
		PollJitter:          time.Duration(c.PollJitter),
	}
	if c.MinTime != "" {
		u.MinTime, _ = time.Parse(time.RFC3339, c.MinTime)
	}
	for _, cc := range c.Components {
		comp, boot, err := buildComponent(cc)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", cc.Name, err)
		}
		u.Components = append(u.Components, comp)
		d.boots[cc.Name] = boot
	}
	for _, h := range c.Health {
		u.HealthChecks = append(u.HealthChecks, buildHealth(h))
	}
	d.ucfg = u
	return d, nil
}

// buildComponent makes the updater component of a configured component
// (whose type and boot parseConfig has checked) and returns its boot
// control.
func buildComponent(cc componentConfig) (updater.Component, slots.BootControl, error) {
	comp := updater.Component{Name: cc.Name, FactoryVersion: cc.FactoryVersion, Pin: cc.Pin}
	var err error
	switch cc.Type {
	case "file":
		comp.Slots, comp.Boot, err = fileSlots(cc)
	case "dir":
		comp.Slots, comp.Boot, err = dirSlots(cc)
	case "ab":
		comp.Slots, comp.Boot, err = partitionSlots(cc)
	}
	if err != nil {
		return comp, nil, err
	}
	return comp, comp.Boot, nil
}

// fileSlots are the two slot files of a "file" component, which are their
// own boot control.
func fileSlots(cc componentConfig) ([]slots.Slot, slots.BootControl, error) {
	var opts []slots.FileOption
	if cc.Mode != "" {
		m, _ := strconv.ParseUint(cc.Mode, 8, 32) // checked by parseConfig
		opts = append(opts, slots.WithFileMode(fs.FileMode(m)))
	}
	f, err := slots.NewFile(cc.Path, opts...)
	if err != nil {
		return nil, nil, err
	}
	return f.Slots(), f, nil
}

// dirSlots are the two slot directories of a "dir" component, which are
// their own boot control.
func dirSlots(cc componentConfig) ([]slots.Slot, slots.BootControl, error) {
	dir, err := slots.NewDir(cc.Path)
	if err != nil {
		return nil, nil, err
	}
	return dir.Slots(), dir, nil
}

// partitionSlots are the partitions of an "ab" component, in the order of
// their slot names, with the bootloader that chooses between them.
func partitionSlots(cc componentConfig) ([]slots.Slot, slots.BootControl, error) {
	names := sortedKeys(cc.Slots)
	boot, err := buildBoot(cc.Boot, names)
	if err != nil {
		return nil, nil, err
	}
	var ss []slots.Slot
	for _, name := range names {
		s, err := partition.New(partition.Config{Name: name, Device: cc.Slots[name], Boot: boot, CmdlinePath: cc.Boot.Cmdline})
		if err != nil {
			return nil, nil, err
		}
		ss = append(ss, s)
	}
	return ss, boot, nil
}

// buildBoot makes the bootloader control that b configures for the slots
// names: nil for a type parseConfig does not admit.
func buildBoot(b *bootConfig, names []string) (slots.BootControl, error) {
	switch b.Type {
	case "grub":
		g, err := grub.New(b.Path, names, bootOptions(b, grub.WithCmdline, grub.WithRuntimeDir)...)
		if err != nil {
			return nil, err
		}
		return g, nil
	case "uboot":
		path := b.Path
		if path == "" {
			path = "/etc/fw_env.config"
		}
		devs, err := uboot.LoadFwEnvConfig(path)
		if err != nil {
			return nil, err
		}
		u, err := uboot.New(devs, names, bootOptions(b, uboot.WithCmdline, uboot.WithRuntimeDir)...)
		if err != nil {
			return nil, err
		}
		return u, nil
	case "sdboot":
		sd, err := sdboot.New(sdboot.Config{ESP: b.Path, Slots: names, CmdlinePath: b.Cmdline})
		if err != nil {
			return nil, err
		}
		return sd, nil
	}
	return nil, nil
}

// bootOptions are the GRUB or U-Boot options for b's kernel command line
// file and runtime directory, made by withCmdline and withRuntimeDir; none
// for what b leaves to the defaults.
func bootOptions[O any](b *bootConfig, withCmdline, withRuntimeDir func(string) O) []O {
	var opts []O
	if b.Cmdline != "" {
		opts = append(opts, withCmdline(b.Cmdline))
	}
	if b.RuntimeDir != "" {
		opts = append(opts, withRuntimeDir(b.RuntimeDir))
	}
	return opts
}

func buildHealth(h healthConfig) health.HealthCheck {
	var c health.HealthCheck
	switch {
	case h.HTTP != "":
		c = health.HTTP(h.HTTP)
	case h.TCP != "":
		c = health.TCP(h.TCP)
	case len(h.Command) > 0:
		c = health.Command(h.Command[0], h.Command[1:]...)
	case len(h.Units) > 0:
		c = health.SystemdUnits(h.Units)
	case h.File != "":
		c = health.FileExists(h.File)
	}
	if h.Timeout > 0 {
		c = health.WithTimeout(c, time.Duration(h.Timeout))
	}
	if h.Name != "" {
		inner := c
		c = health.Func(h.Name, inner.Check)
	}
	return c
}

// envEditor is what the GRUB and U-Boot backends offer for `env`.
type envEditor interface {
	Env(ctx context.Context) (map[string]string, error)
	SetEnv(ctx context.Context, vars map[string]string) error
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
