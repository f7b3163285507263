package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program, for tests: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("switchback", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports parse errors itself
	fs.StringVar(&c.configPath, "config", defaultConfigPath, "configuration `FILE`")
	fs.BoolVar(&c.verbose, "v", false, "log the updater's steps to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "switchback: %v\n%s", err, shortUsage)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, shortUsage)
		return exitUsage
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		return c.help(rest, fs)
	}
	if name == "relay" { // the relay has its own configuration (relay.go)
		return runRelay(ctx, rest, c.verbose, stdout, stderr)
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "switchback: unknown command %q\n%s", name, shortUsage)
		return exitUsage
	}
	err := cmd.run(ctx, c, rest)
	code := exitCode(err)
	if err != nil && !errors.Is(err, errHelpShown) {
		fmt.Fprintf(stderr, "switchback: %s: %s\n", cmd.name, describe(err, code))
	}
	return code
}

// help answers `switchback help [COMMAND|config]`.
func (c *cli) help(args []string, global *flag.FlagSet) int {
	switch {
	case len(args) == 0:
		printUsage(c.stdout, global)
	case args[0] == "config":
		fmt.Fprint(c.stdout, configHelp)
	default:
		cmd, ok := lookup(args[0])
		if !ok {
			fmt.Fprintf(c.stderr, "switchback: help: unknown command %q\n%s", args[0], shortUsage)
			return exitUsage
		}
		// Each command prints its own help, flags included, on -h.
		cmd.run(context.Background(), c, []string{"-h"})
	}
	return exitOK
}

// subcommand is one command of the tool.
type subcommand struct {
	name     string
	synopsis string // flags and arguments after the name
	summary  string // for the list of commands
	detail   string // for its -h, after the synopsis
	run      func(ctx context.Context, c *cli, args []string) error
}

// commands are the subcommands, in the order `switchback -h` lists them.
// (A function, not a variable: the commands' run functions refer to the
// table through lookup.)
func commands() []subcommand {
	return []subcommand{
		{"status", "", "components, slots, booted and primary slot, tries left, pending update, blocklist", statusHelp, cmdStatus},
		{"check", "", "refresh the trusted metadata and list the updates this device may install", checkHelp, cmdCheck},
		{"install", "[-file IMAGE]", "install the newest update, or a local image, into the inactive slot and arm it", installHelp, cmdInstall},
		{"confirm", "", "run the health checks of a version on trial: commit it, or roll it back", confirmHelp, cmdConfirm},
		{"mark-good", "[-component C]", "commit the running trial without health checks", markGoodHelp, cmdMarkGood},
		{"mark-bad", "[-component C] [-slot S]", "mark a slot bad (default: the running one): the primary runs next start", markBadHelp, cmdMarkBad},
		{"rollback", "[-component C]", "go back to the other slot at the next start", rollbackHelp, cmdRollback},
		{"env", "get|set [-component C] [NAME...|NAME=VALUE...]", "read or write the bootloader environment (GRUB grubenv, U-Boot env)", envHelp, cmdEnv},
		{"run", "", "check and install updates every poll_interval until stopped, sending events to the report endpoint", runHelp, cmdRun},
		{"guard", "-component C", "count one start of an application on trial (ExecStartPre=)", guardHelp, cmdGuard},
	}
}

func lookup(name string) (subcommand, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return subcommand{}, false
}
