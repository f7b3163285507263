package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

const usage = `usage: switchback [-config FILE] [-v] COMMAND [ARGS]

commands:
  status                      components, slots, booted and primary slot, tries left, pending update, blocklist
  check                       refresh the trusted metadata and list the updates this device may install
  install [-file IMAGE]       install the newest update (or a local image, verified against the trusted
                              metadata) into the inactive slot and arm it; reboot or restart to try it
  confirm                     run the health checks on a version on trial: commit it, or mark it bad
                              (the boot-assessment unit runs this; exit 1 when the trial was rolled back)
  mark-good [-component C]    commit the running trial without health checks
  mark-bad [-component C] [-slot S]
                              mark a slot bad (default: the running one): the primary runs next start
  rollback [-component C]     go back to the other slot at the next start (the running slot is marked bad)
  env get [-component C] [NAME...]
  env set [-component C] NAME=VALUE...
                              read or write the bootloader environment (GRUB grubenv, U-Boot env)
  guard -component C          count one start of an application on trial (ExecStartPre=); after the
                              configured tries without a commit, put the previous version back
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program, for tests: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("switchback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "/etc/switchback/config.json", "configuration file")
	verbose := fs.Bool("v", false, "log to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	b, err := readConfigFile(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "switchback:", err)
		return 1
	}
	c, err := parseConfig(b)
	if err != nil {
		fmt.Fprintln(stderr, "switchback:", err)
		return 1
	}
	d, err := build(c)
	if err != nil {
		fmt.Fprintln(stderr, "switchback:", err)
		return 1
	}
	if *verbose {
		d.ucfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if err := d.dispatch(ctx, cmd, rest, stdout, stderr); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "switchback:", err)
			return 2
		}
		fmt.Fprintln(stderr, "switchback:", err)
		return 1
	}
	return 0
}

// lockWait is how long a command waits for another process to release the
// state directory before it fails naming that process.
const lockWait = 5 * time.Second

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func (d *device) dispatch(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	component := sub.String("component", "", "component (default: the only one, or the first)")
	var file, slot *string
	switch cmd {
	case "install":
		file = sub.String("file", "", "local image to install (offline update)")
	case "mark-bad":
		slot = sub.String("slot", "", "slot to mark bad (default: the running one)")
	case "env":
		if len(args) == 0 || (args[0] != "get" && args[0] != "set") {
			return usageError{"env: want get or set"}
		}
		cmd, args = "env "+args[0], args[1:]
	}
	if err := sub.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	// One writer per state directory: the commands that change the
	// device's state without the updater take its lock here; New takes it
	// for the others.
	switch cmd {
	case "guard", "mark-good", "mark-bad", "rollback", "env set":
		l, err := updater.LockStateDir(d.cfg.StateDir, lockWait)
		if err != nil {
			return err
		}
		defer l.Unlock()
	}
	d.ucfg.LockTimeout = lockWait
	comp := func() (string, slots.BootControl, error) {
		name := *component
		if name == "" && len(d.cfg.Components) > 0 {
			name = d.cfg.Components[0].Name
		}
		b, ok := d.boots[name]
		if !ok {
			return "", nil, fmt.Errorf("no component %q in the configuration", name)
		}
		return name, b, nil
	}
	switch cmd {
	case "guard":
		// The guard runs before the application, on every start: it must
		// not need the network, nor the trusted metadata.
		if *component == "" {
			return usageError{"guard: -component is required"}
		}
		name, b, err := comp()
		if err != nil {
			return err
		}
		sc, ok := b.(slots.StartCounter)
		if !ok {
			return fmt.Errorf("guard: component %s is not counted in userspace (its bootloader counts boots)", name)
		}
		bs, err := sc.CountStart(ctx)
		if err != nil {
			return fmt.Errorf("guard: %w", err)
		}
		if bs.Trial != "" && bs.Booted == bs.Trial {
			fmt.Fprintf(stdout, "%s: trial of slot %s, %d start(s) left after this one\n", name, bs.Trial, bs.TriesLeft)
		} else if bs.Trial != "" {
			fmt.Fprintf(stdout, "%s: trial of slot %s never committed; slot %s put back\n", name, bs.Trial, bs.Booted)
		}
		return nil
	case "mark-good", "mark-bad", "rollback":
		name, b, err := comp()
		if err != nil {
			return err
		}
		bs, err := b.Status(ctx)
		if err != nil {
			return err
		}
		switch cmd {
		case "mark-good":
			if err := b.Commit(ctx, bs.Booted); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: slot %s committed\n", name, bs.Booted)
		case "mark-bad", "rollback":
			target := bs.Booted
			if slot != nil && *slot != "" {
				target = *slot
			}
			if err := b.MarkBad(ctx, target); err != nil {
				return err
			}
			after, err := b.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: slot %s marked bad; slot %s runs at the next start\n", name, target, after.Primary)
		}
		return nil
	case "env get", "env set":
		name, b, err := comp()
		if err != nil {
			return err
		}
		ed, ok := b.(envEditor)
		if !ok {
			return fmt.Errorf("component %s has no bootloader environment", name)
		}
		if cmd == "env set" {
			vars := map[string]string{}
			for _, a := range sub.Args() {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" {
					return usageError{fmt.Sprintf("env set: %q is not NAME=VALUE", a)}
				}
				vars[k] = v
			}
			if len(vars) == 0 {
				return usageError{"env set: nothing to set"}
			}
			return ed.SetEnv(ctx, vars)
		}
		env, err := ed.Env(ctx)
		if err != nil {
			return err
		}
		names := sub.Args()
		if len(names) == 0 {
			for k := range env {
				names = append(names, k)
			}
			sort.Strings(names)
		}
		for _, k := range names {
			v, ok := env[k]
			if !ok {
				return fmt.Errorf("env get: %s is not set", k)
			}
			fmt.Fprintf(stdout, "%s=%s\n", k, v)
		}
		return nil
	}

	// The rest needs the updater.
	restartNeeded := false
	d.ucfg.Restart = func(ctx context.Context, component string) error {
		restartNeeded = true
		return nil
	}
	d.ucfg.Events = func(e updater.Event) {
		switch e := e.(type) {
		case updater.StateChanged:
			line := fmt.Sprintf("%s: %s %s → %s", e.Component, e.Version, e.From, e.To)
			if e.Reason != "" {
				line += ": " + e.Reason
			}
			fmt.Fprintln(stdout, line)
		case updater.HealthResult:
			res := "ok"
			if e.Err != nil {
				res = e.Err.Error()
			}
			fmt.Fprintf(stdout, "%s: health %s: %s (%s)\n", e.Component, e.Check, res, e.Duration.Round(time.Millisecond))
		}
	}
	u, err := updater.New(d.ucfg)
	if err != nil {
		return err
	}
	defer u.Close()
	switch cmd {
	case "status":
		st, err := u.Status(ctx)
		if err != nil {
			return err
		}
		printStatus(stdout, st)
		return nil
	case "check":
		ups, err := u.Check(ctx)
		if errors.Is(err, updater.ErrNoUpdate) {
			fmt.Fprintln(stdout, "up to date")
			return nil
		}
		if err != nil {
			return err
		}
		for _, up := range ups {
			fmt.Fprintf(stdout, "%s: %s → %s (%s, %d bytes)\n", up.Component, up.From, up.To, up.Target.Path, up.Target.Length)
		}
		return nil
	case "install":
		if *file != "" {
			err = u.InstallFile(ctx, *file)
		} else {
			var ups []updater.Update
			ups, err = u.Check(ctx)
			if errors.Is(err, updater.ErrNoUpdate) {
				fmt.Fprintln(stdout, "up to date")
				return nil
			}
			for _, up := range ups {
				if err == nil {
					err = u.Install(ctx, up)
				}
			}
		}
		if err != nil {
			return err
		}
		if restartNeeded {
			fmt.Fprintln(stdout, "armed: reboot (or restart the application) to try the new version")
		}
		return nil
	case "confirm":
		// Exit non-zero only when the version running now failed and the
		// device must restart into the previous one: a fallback the
		// bootloader already made is recorded, and this boot is good (a
		// failure here would make the boot-assessment unit reboot in a loop).
		var n health.Notifier
		return health.BootAssessment(ctx, &n, func(ctx context.Context) error {
			err := u.Confirm(ctx)
			if errors.Is(err, updater.ErrRolledBack) && !restartNeeded {
				fmt.Fprintln(stdout, "the previous version runs; the failed update is recorded")
				return nil
			}
			return err
		})
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func printStatus(w io.Writer, st updater.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range st.Components {
		fmt.Fprintf(tw, "component\t%s\n", c.Name)
		fmt.Fprintf(tw, "  installed\t%s\n", c.Installed)
		if c.BootErr != nil {
			fmt.Fprintf(tw, "  boot\terror: %v\n", c.BootErr)
		} else {
			b := c.Boot
			fmt.Fprintf(tw, "  booted\t%s\n", b.Booted)
			fmt.Fprintf(tw, "  primary\t%s\n", b.Primary)
			if b.Trial != "" {
				fmt.Fprintf(tw, "  trial\t%s (%d tries left)\n", b.Trial, b.TriesLeft)
			}
			if len(b.Bad) > 0 {
				fmt.Fprintf(tw, "  bad\t%s\n", strings.Join(b.Bad, " "))
			}
		}
		names := make([]string, 0, len(c.Slots))
		for n := range c.Slots {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s := c.Slots[n]
			state := "complete"
			if !s.Complete {
				state = "incomplete"
			}
			fmt.Fprintf(tw, "  slot %s\t%s (%s)\n", n, s.Version, state)
		}
		if p := c.Pending; p != nil {
			fmt.Fprintf(tw, "  pending\t%s %s in slot %s, %d/%d bytes\n", p.Version, p.Phase, p.Slot, p.Done, p.Total)
		}
		if c.LastResult != "" {
			fmt.Fprintf(tw, "  last\t%s\n", c.LastResult)
		}
	}
	for _, b := range st.Blocklist {
		fmt.Fprintf(tw, "blocklisted\t%s %s: %s\n", b.Component, b.Version, b.Reason)
	}
	tw.Flush()
}
