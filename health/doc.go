// Package health decides whether a new version may be committed.
//
// A [HealthCheck] has a name and a Check method. [Func] adapts a plain
// function; combinators run checks together, bound them in time and retry
// them until a deadline. The updater runs its checks after a new version
// starts: it commits only when they pass, and rolls back otherwise. One
// check is on by default in the updater: the update server must be
// reachable, because a version that cannot reach its update server can
// never be fixed over the air.
package health
