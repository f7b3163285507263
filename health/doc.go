// Package health decides whether a new version may be committed.
//
// A [HealthCheck] has a name and a Check method. [Func] adapts a plain
// function; combinators run checks together, bound them in time and retry
// them until a deadline. The updater runs its checks after a new version
// starts: it commits only when they pass, and rolls back otherwise. One
// check is on by default in the updater: the update server must be
// reachable, because a version that cannot reach its update server can
// never be fixed over the air.
//
// # Combinators and results
//
// [All] runs checks in parallel and reports every failure; [Any] passes
// when one does; [WithTimeout] bounds a check; [Retry] runs it again until
// its context's deadline; [Grace] does not judge it before a grace period
// after start. [Run] runs a list of checks and reports each outcome as a
// [Result] (name, error, start, duration): the events the updater forwards
// to the application. Failures are [*CheckError] values naming their check.
//
// # Built-in checks
//
// [HTTP], [TCP], [Command], [FileExists], [SocketExists], [DiskFree],
// [MemoryFree], [SystemdUnits] (over D-Bus, behind the [UnitStater] seam)
// and [UpdateServerReachable]. Each has a default name derived from its
// target, the [Named] and [Timeout] options (default [DefaultTimeout]),
// and errors that say what was found and what was wanted. None uses global
// state: [HTTP] has its own client, never http.DefaultClient. Every check
// and combinator here is safe for concurrent use.
//
// # systemd
//
// [Notifier] speaks sd_notify through go-systemd: READY=1 once confirmation
// is done, STATUS= with the update state, WATCHDOG=1 while healthy. Outside
// systemd it is a silent no-op. [BootAssessment] is the body of the
// boot-assessment unit ordered before boot-complete.target; the units in
// examples/systemd show the agent, the boot assessment and an application
// guarded against crash loops.
package health
