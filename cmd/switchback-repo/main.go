// Command switchback-repo builds and maintains a static, signed TUF
// repository of switchback releases. It is a thin shell over package
// repository; see that package for the layout and the signing rules.
//
// Usage:
//
//	switchback-repo <command> [flags] [args]
//
// Commands:
//
//	init      create keys and version 1 of the four roles
//	add       add a release file as a target (optionally zstd-compressed)
//	delta     add the chunk index and/or patches of an image target
//	remove    remove targets
//	list      list targets
//	status    versions, expiry and keys of every role
//	publish   sign and publish staged changes (-to s3://bucket/prefix: and upload)
//	refresh   re-sign snapshot and timestamp with fresh expiry (for cron)
//	rotate    replace a role's keys
//	delegate  delegate target paths to a role with its own keys (per hardware, per vendor)
//	prune     delete targets and metadata no device can still ask for
//	prune-chunks  delete chunk store files no live chunk index names (after prune)
//	sign      export / sign / merge for threshold and offline signing
//	verify    walk the repository as a device would and report what it installs
//
// Every command takes -repo DIR (default "repo") and, when it signs, -keys
// DIR[,DIR...] (default "keys"): the private keys available on this
// machine. "init -root-keys DIR" writes the root keys elsewhere (a
// removable medium); add that directory to -keys only to rotate keys or
// renew the root.
//
// Exit status: 0 success, 1 failure, 2 usage error, 3 changes staged and
// waiting for more signatures (see "sign").
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitPending = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: switchback-repo <command> [flags] [args]

commands:
  init      create keys and version 1 of the four roles
  add       add a release file as a target
  add-oci   add a container image (its manifest or index, from a registry) as a target
  delta     add the chunk index and/or patches of an image target
  remove    remove targets
  list      list targets
  status    versions, expiry and keys of every role
  publish   sign and publish staged changes; -to s3://bucket/prefix also uploads
  refresh   re-sign snapshot and timestamp with fresh expiry (run from cron)
  rotate    replace a role's keys
  delegate  delegate target paths to a role with its own keys (per hardware, per vendor)
  rollout   stage a release over time (ramp), halt or resume it
  channels  set the channels a release is published on
  prune     delete targets and metadata no device can still ask for
  prune-chunks  delete chunk store files no live chunk index names (after prune)
  sign      export | sign | merge: threshold and offline signing
  verify    walk the repository as a device would

run "switchback-repo <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"init":     cmdInit,
		"add":      cmdAdd,
		"delta":    cmdDelta,
		"remove":   cmdRemove,
		"list":     cmdList,
		"status":   cmdStatus,
		"publish":  cmdPublish,
		"refresh":  cmdRefresh,
		"rotate":   cmdRotate,
		"delegate": cmdDelegate,
		"prune":    cmdPrune,
		"sign":     cmdSign,
		"verify":   cmdVerify,
	}
	cmds["prune-chunks"] = cmdPruneChunks
	cmds["add-oci"] = cmdAddOCI
	cmds["rollout"] = cmdRollout
	cmds["channels"] = cmdChannels
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "switchback-repo: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return f(ctx, args[1:], stdout, stderr)
}
