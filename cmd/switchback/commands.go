package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

// One function per command. Each parses its flags first (so that -h works
// without a configuration), then loads the configuration.

func cmdStatus(ctx context.Context, c *cli, args []string) error {
	if err := c.parse(c.flags("status"), args); err != nil {
		return err
	}
	d, err := c.load()
	if err != nil {
		return err
	}
	s, err := c.newSession(d, 0)
	var st updater.Status
	switch {
	case errors.Is(err, updater.ErrStateDirLocked):
		// An application holds the StateDir: status only reads, so it
		// reads the state that application last saved.
		st, err = updater.ReadStatus(ctx, d.ucfg)
	case err == nil:
		defer s.close(ctx)
		st, err = s.u.Status(ctx)
	}
	if err != nil {
		return err
	}
	printStatus(c.stdout, st)
	return nil
}

func cmdCheck(ctx context.Context, c *cli, args []string) error {
	if err := c.parse(c.flags("check"), args); err != nil {
		return err
	}
	s, err := c.session()
	if err != nil {
		return err
	}
	defer s.close(ctx)
	ups, err := s.u.Check(ctx)
	if upToDate(err) {
		fmt.Fprintln(c.stdout, "up to date")
		return nil
	}
	if err != nil {
		return err
	}
	for _, up := range ups {
		fmt.Fprintf(c.stdout, "%s: %s → %s (%s, %d bytes)\n", up.Component, up.From, up.To, up.Target.Path, up.Target.Length)
	}
	return nil
}

func cmdInstall(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("install")
	file := fs.String("file", "", "install this local `IMAGE` (an offline update; a relative path is from the working directory) instead of the newest published release; it must be, byte for byte, a target of the trusted metadata")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (an image is given with -file)", fs.Arg(0))}
	}
	s, err := c.session()
	if err != nil {
		return err
	}
	defer s.close(ctx)
	if *file != "" {
		err = installFile(ctx, s, *file)
	} else {
		err = installNewest(ctx, s)
	}
	s.progress.end()
	if upToDate(err) {
		fmt.Fprintln(c.stdout, "up to date")
		return nil
	}
	if err != nil {
		return err
	}
	if s.restartNeeded.Load() {
		fmt.Fprintln(c.stdout, "armed: reboot (or restart the application) to try the new version")
	}
	return nil
}

// installFile installs a local image; a relative path is the caller's.
func installFile(ctx context.Context, s *session, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	return s.u.InstallFile(ctx, abs)
}

// installNewest installs what Check finds, component after component.
func installNewest(ctx context.Context, s *session) error {
	ups, err := s.u.Check(ctx)
	if err != nil {
		return err
	}
	for _, up := range ups {
		if err := s.u.Install(ctx, up); err != nil {
			return err
		}
	}
	return nil
}

func cmdConfirm(ctx context.Context, c *cli, args []string) error {
	if err := c.parse(c.flags("confirm"), args); err != nil {
		return err
	}
	s, err := c.session()
	if err != nil {
		return err
	}
	defer s.close(ctx)
	// Exit non-zero only when the version running now failed and the
	// device must restart into the previous one: a fallback the
	// bootloader already made is recorded, and this boot is good (a
	// failure here would make the boot-assessment unit reboot in a loop).
	var n health.Notifier
	return health.BootAssessment(ctx, &n, func(ctx context.Context) error {
		err := s.u.Confirm(ctx)
		if errors.Is(err, updater.ErrRolledBack) && !s.restartNeeded.Load() {
			fmt.Fprintln(c.stdout, "the previous version runs; the failed update is recorded")
			return nil
		}
		return err
	})
}

// bootCommand parses the flags of a command that works on one component's
// boot control only (no network, no trusted metadata), adding -component.
// The arguments after the flags stay in fs.Args().
// check, when not nil, judges the command line before the configuration
// is loaded.
// bootCommand parses the flags of a command that works on a component's
// boot control and returns that control. A command that changes what the
// state directory describes (writes) holds the directory's lock until it
// calls release: one writer per state directory, with the updater too.
func (c *cli) bootCommand(fs *flag.FlagSet, args []string, componentRequired, writes bool, check func() error) (name string, b slots.BootControl, release func(), err error) {
	usage := "the `COMPONENT` (default: the first configured)"
	if componentRequired {
		usage = "the `COMPONENT` (required)"
	}
	component := fs.String("component", "", usage)
	if err := c.parse(fs, args); err != nil {
		return "", nil, nil, err
	}
	if componentRequired && *component == "" {
		return "", nil, nil, usageError{"-component is required"}
	}
	if check != nil {
		if err := check(); err != nil {
			return "", nil, nil, err
		}
	}
	d, err := c.load()
	if err != nil {
		return "", nil, nil, err
	}
	release = func() {}
	if writes {
		l, err := updater.LockStateDir(d.cfg.StateDir, lockWait)
		if err != nil {
			return "", nil, nil, err
		}
		release = func() { l.Unlock() }
	}
	name, b, err = d.component(*component)
	if err != nil {
		release()
		return "", nil, nil, err
	}
	return name, b, release, nil
}

func cmdMarkGood(ctx context.Context, c *cli, args []string) error {
	name, b, release, err := c.bootCommand(c.flags("mark-good"), args, false, true, nil)
	if err != nil {
		return err
	}
	defer release()
	bs, err := b.Status(ctx)
	if err != nil {
		return err
	}
	if err := b.Commit(ctx, bs.Booted); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: slot %s committed\n", name, bs.Booted)
	return nil
}

func cmdMarkBad(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("mark-bad")
	slot := fs.String("slot", "", "the `SLOT` to mark bad (default: the running one)")
	name, b, release, err := c.bootCommand(fs, args, false, true, nil)
	if err != nil {
		return err
	}
	defer release()
	return markBad(ctx, c, name, b, *slot)
}

func cmdRollback(ctx context.Context, c *cli, args []string) error {
	name, b, release, err := c.bootCommand(c.flags("rollback"), args, false, true, nil)
	if err != nil {
		return err
	}
	defer release()
	return markBad(ctx, c, name, b, "")
}

// markBad marks slot (default: the running one) bad and says what runs next.
func markBad(ctx context.Context, c *cli, name string, b slots.BootControl, slot string) error {
	bs, err := b.Status(ctx)
	if err != nil {
		return err
	}
	if slot == "" {
		slot = bs.Booted
	}
	if err := b.MarkBad(ctx, slot); err != nil {
		return err
	}
	after, err := b.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: slot %s marked bad; slot %s runs at the next start\n", name, slot, after.Primary)
	return nil
}

func cmdEnv(ctx context.Context, c *cli, args []string) error {
	op := ""
	if len(args) > 0 && (args[0] == "get" || args[0] == "set") {
		op, args = args[0], args[1:]
	}
	fs := c.flags(strings.TrimSpace("env " + op))
	name, b, release, err := c.bootCommand(fs, args, false, op == "set", func() error {
		if op == "" {
			return usageError{"want env get or env set (see switchback env -h)"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer release()
	ed, ok := b.(envEditor)
	if !ok {
		return fmt.Errorf("component %s has no bootloader environment", name)
	}
	if op == "set" {
		return envSet(ctx, ed, fs.Args())
	}
	return envGet(ctx, c, ed, fs.Args())
}

func envSet(ctx context.Context, ed envEditor, args []string) error {
	vars := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return usageError{fmt.Sprintf("%q is not NAME=VALUE", a)}
		}
		vars[k] = v
	}
	if len(vars) == 0 {
		return usageError{"nothing to set"}
	}
	return ed.SetEnv(ctx, vars)
}

func envGet(ctx context.Context, c *cli, ed envEditor, names []string) error {
	env, err := ed.Env(ctx)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		for k := range env {
			names = append(names, k)
		}
		sort.Strings(names)
	}
	for _, k := range names {
		v, ok := env[k]
		if !ok {
			return fmt.Errorf("%s is not set", k)
		}
		fmt.Fprintf(c.stdout, "%s=%s\n", k, v)
	}
	return nil
}

// cmdGuard runs before the application, on every start: it must not need
// the network, nor the trusted metadata.
func cmdGuard(ctx context.Context, c *cli, args []string) error {
	name, b, release, err := c.bootCommand(c.flags("guard"), args, true, true, nil)
	if err != nil {
		return err
	}
	defer release()
	sc, ok := b.(slots.StartCounter)
	if !ok {
		return fmt.Errorf("component %s is not counted in userspace (its bootloader counts boots)", name)
	}
	bs, err := sc.CountStart(ctx)
	if err != nil {
		return err
	}
	if bs.Trial != "" && bs.Booted == bs.Trial {
		fmt.Fprintf(c.stdout, "%s: trial of slot %s, %d start(s) left after this one\n", name, bs.Trial, bs.TriesLeft)
	} else if bs.Trial != "" {
		fmt.Fprintf(c.stdout, "%s: trial of slot %s never committed; slot %s put back\n", name, bs.Trial, bs.Booted)
	}
	return nil
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
