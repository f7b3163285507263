package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchback-ota/switchback/report"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

// cli is one invocation: where output goes and the global flags.
type cli struct {
	stdout, stderr io.Writer
	configPath     string
	verbose        bool
}

// lockWait is how long a command waits for another process to release the
// state directory before it fails naming that process.
const lockWait = 5 * time.Second

// errHelpShown is returned by a command whose -h printed its help: exit 0,
// nothing more to say.
var errHelpShown = errors.New("help shown")

// flags returns the flag set of a command. Parse errors are reported by
// parse, so the set itself prints nothing.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses a command's flags. On -h it prints the command's help to
// stdout and returns errHelpShown.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		cmd, _ := lookup(strings.Fields(fs.Name())[0])
		printCommandHelp(c.stdout, cmd, fs)
		return errHelpShown
	}
	if err != nil {
		return usageError{fmt.Sprintf("%v (see switchback %s -h)", err, fs.Name())}
	}
	return nil
}

// load reads the configuration file and builds the device it describes.
// Every error it returns is a configError naming the file concerned.
func (c *cli) load() (*device, error) {
	b, err := readConfig(c.configPath)
	if err != nil {
		return nil, configError{err}
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return nil, configError{fmt.Errorf("%s: %w", c.configPath, err)}
	}
	d, err := build(cfg)
	if err != nil {
		return nil, configError{fmt.Errorf("%s: %w", c.configPath, err)}
	}
	if c.verbose {
		d.ucfg.Logger = slog.New(slog.NewTextHandler(c.stderr, nil))
	}
	return d, nil
}

// readConfig reads the configuration file; a missing one says how to name
// another.
func readConfig(path string) ([]byte, error) {
	b, err := readConfigFile(path)
	if errors.Is(err, os.ErrNotExist) && path == defaultConfigPath {
		return nil, fmt.Errorf("%w (name another with -config FILE; its format: switchback help config)", err)
	}
	return b, err
}

// component returns the component a command acts on: the one named, or the
// first configured.
func (d *device) component(name string) (string, slots.BootControl, error) {
	if name == "" && len(d.cfg.Components) > 0 {
		name = d.cfg.Components[0].Name
	}
	b, ok := d.boots[name]
	if !ok {
		return "", nil, usageError{fmt.Sprintf("no component %q in the configuration (components: %s)", name, strings.Join(d.componentNames(), ", "))}
	}
	return name, b, nil
}

func (d *device) componentNames() []string {
	names := make([]string, len(d.cfg.Components))
	for i, cc := range d.cfg.Components {
		names[i] = cc.Name
	}
	return names
}

// session is an updater with what the CLI wants from its events: lines on
// stdout, a progress display, and whether a restart is needed.
type session struct {
	u             *updater.Updater
	rep           *report.Reporter // nil without a "report" section
	restartNeeded atomic.Bool
	progress      *progress
}

// session loads the configuration and builds its updater.
func (c *cli) session() (*session, error) {
	d, err := c.load()
	if err != nil {
		return nil, err
	}
	return c.newSession(d, lockWait)
}

// newSession builds the updater of a configured device, waiting up to
// wait for another process to release its StateDir.
func (c *cli) newSession(d *device, wait time.Duration) (*session, error) {
	s := &session{progress: newProgress(c.stdout, isTerminal(c.stdout))}
	cfg := d.ucfg
	if cfg.Restart == nil {
		cfg.Restart = s.restart
	}
	cfg.Events = func(e updater.Event) { s.event(c.stdout, e) }
	if rc := reporterConfig(d.cfg); rc != nil {
		rc.Logger = cfg.Logger
		rep, err := report.New(*rc)
		if err != nil {
			return nil, configError{fmt.Errorf("%s: report: %w", c.configPath, err)}
		}
		s.rep = rep
		cfg.Events = func(e updater.Event) {
			s.event(c.stdout, e)
			rep.Observe(e)
		}
	}
	cfg.LockTimeout = wait
	u, err := updater.New(cfg)
	if errors.Is(err, updater.ErrStateDirLocked) {
		return nil, err
	}
	if err != nil {
		return nil, configError{fmt.Errorf("%s: %w", c.configPath, inConfigWords(err, d.cfg))}
	}
	s.u = u
	return s, nil
}

// restart is the updater's Restart: the CLI never restarts anything itself;
// it tells the operator to.
func (s *session) restart(_ context.Context, _ string) error {
	s.restartNeeded.Store(true)
	return nil
}

// event prints one updater event.
func (s *session) event(w io.Writer, e updater.Event) {
	switch e := e.(type) {
	case updater.Progress:
		s.progress.update(e)
	case updater.StateChanged:
		s.progress.end()
		line := fmt.Sprintf("%s: %s %s → %s", e.Component, e.Version, e.From, e.To)
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		fmt.Fprintln(w, line)
	case updater.HealthResult:
		res := "ok"
		if e.Err != nil {
			res = e.Err.Error()
		}
		fmt.Fprintf(w, "%s: health %s: %s (%s)\n", e.Component, e.Check, res, e.Duration.Round(time.Millisecond))
	}
}

// inConfigWords rewrites the updater's and verify's names of settings
// (Config.Root, MetadataURL) into the configuration file's (root,
// metadata_url), so that an error points at the line to fix.
func inConfigWords(err error, c *fileConfig) error {
	return wordsError{err, configWords(c).Replace(err.Error())}
}

// wordsError keeps the original error reachable (errors.Is) under a
// rewritten message.
type wordsError struct {
	err error
	msg string
}

func (e wordsError) Error() string { return e.msg }
func (e wordsError) Unwrap() error { return e.err }

// configWords maps Go names of the library's settings to the file's keys.
func configWords(c *fileConfig) *strings.Replacer {
	pairs := []string{
		"Config.Root", "root " + c.Root, "TrustedRoot", "root " + c.Root,
		"Config.MetadataURL", "metadata_url", "Config.TargetsURL", "targets_url",
		"MetadataURL and TargetsURL", "metadata_url and targets_url",
	}
	for _, f := range configFields() {
		pairs = append(pairs, "Config."+f.goName, f.key)
	}
	pairs = append(pairs,
		"CAFile, CertFile and KeyFile", "ca_file, cert_file and key_file",
		"StateDir", "state_dir", "at least one Component", "at least one component",
		"Boot is required", "boot is required", "Name is required", "name is required",
		"FactoryVersion", "factory_version")
	return strings.NewReplacer(pairs...)
}
