package health_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/switchback-ota/switchback/health"
)

// The five-line way to add health checks: compose them, bound them, run
// them. The updater does the running during confirmation; each Result is an
// event with the check's name, error and duration.
//
// On a device the URL is the application's own, SystemdUnits asks systemd
// over D-Bus and DiskFree looks at the data partition; here an httptest
// server, a stand-in for systemd (unitsUp) and a temporary directory take
// their places.
func Example() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"status":"ok"}`)
	}))
	defer app.Close()
	dataDir, err := os.MkdirTemp("", "health-example") // /var/lib/gateway
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dataDir)

	checks := health.All(
		health.HTTP(app.URL+"/healthz", health.WithBodyContains(`"status":"ok"`)),
		health.SystemdUnits([]string{"gateway", "mosquitto"}, health.WithUnitStater(unitsUp{})),
		health.DiskFree(dataDir, 1<<20),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Retry until the deadline: the new version may need a few seconds.
	if err := health.Retry(checks, 5*time.Second).Check(ctx); err != nil {
		log.Printf("unhealthy, rolling back: %v", err)
		return
	}
	fmt.Println("healthy: commit")
	// Output: healthy: commit
}

// unitsUp stands in for systemd in Example: every unit asked about is
// loaded and running. On a device, leave out WithUnitStater.
type unitsUp struct{}

func (unitsUp) ListUnitsByNamesContext(ctx context.Context, names []string) ([]dbus.UnitStatus, error) {
	out := make([]dbus.UnitStatus, len(names))
	for i, n := range names {
		out[i] = dbus.UnitStatus{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running"}
	}
	return out, nil
}

func ExampleAll() {
	db := health.Func("db", func(ctx context.Context) error { return errors.New("connection refused") })
	cache := health.Func("cache", func(ctx context.Context) error { return nil })
	queue := health.Func("queue", func(ctx context.Context) error { return errors.New("disk full") })

	err := health.All(db, cache, queue).Check(context.Background())
	fmt.Println(err) // every failure, with its check's name
	// Output:
	// db: connection refused
	// queue: disk full
}

func ExampleRun() {
	checks := []health.HealthCheck{
		health.Func("api", func(ctx context.Context) error { return nil }),
		health.Func("db", func(ctx context.Context) error { return errors.New("connection refused") }),
	}
	var results []health.Result
	err := health.Run(context.Background(), checks, func(r health.Result) {
		results = append(results, r) // forward as an event: r.Name, r.Err, r.Duration
	})
	slices.SortFunc(results, func(a, b health.Result) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range results {
		fmt.Printf("%s ok=%v\n", r.Name, r.OK())
	}
	fmt.Println("error:", err)
	// Output:
	// api ok=true
	// db ok=false
	// error: db: connection refused
}

func ExampleRetry() {
	tries := 0
	warmingUp := health.Func("warm-up", func(ctx context.Context) error {
		if tries++; tries < 3 {
			return errors.New("not ready")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := health.Retry(warmingUp, 10*time.Millisecond).Check(ctx)
	fmt.Println(err, tries)
	// Output: <nil> 3
}

func ExampleHTTP() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"status":"degraded"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	check := health.HTTP(srv.URL+"/healthz", health.Named("api"), health.Timeout(5*time.Second))
	err := check.Check(context.Background())
	fmt.Println(check.Name(), errors.Is(err, health.ErrTimeout), err != nil)
	// Output: api false true
}

func ExampleGrace() {
	// Judge the application only after it has run for 30 seconds: one that
	// looks fine at first and then crashes is not committed.
	started := time.Now()
	check := health.Grace(health.SystemdUnits([]string{"gateway"}), 30*time.Second, health.GraceStart(started))
	_ = check
	// Output:
}

func ExampleUpdateServerReachable() {
	// The updater passes its TUF client's refresh; any func(ctx) error does.
	refresh := func(ctx context.Context) error { return nil }
	err := health.UpdateServerReachable(refresh).Check(context.Background())
	fmt.Println(err)
	// Output: <nil>
}

func ExampleNotifier() {
	var n health.Notifier // outside systemd every call is a silent no-op
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	_ = n.Status("confirming version 1.2.0")
	// ... confirmation passed ...
	_ = n.Ready()
	var lastLoop time.Time // the main loop stores time.Now() here each turn
	go n.Watchdog(ctx, func() bool { return time.Since(lastLoop) < 30*time.Second })
	// Output:
}

func ExampleBootAssessment() {
	// The body of `switchback confirm`, run by
	// examples/systemd/switchback-boot-assessment.service.
	confirm := func(ctx context.Context) error {
		return nil // updater.Confirm: health checks, then commit or mark bad
	}
	if err := health.BootAssessment(context.Background(), &health.Notifier{}, confirm); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1) // boot-complete.target is not reached
	}
	// Output:
}

func ExampleWithObserver() {
	// One composed check, as the application hands it to the updater.
	check := health.All(
		health.Func("api", func(ctx context.Context) error { return nil }),
		health.Any(
			health.Func("primary-db", func(ctx context.Context) error { return errors.New("refused") }),
			health.Func("replica-db", func(ctx context.Context) error { return nil }),
		),
	)
	var events []string
	ctx := health.WithObserver(context.Background(), func(r health.Result) {
		events = append(events, fmt.Sprintf("%s ok=%v", r.Name, r.OK())) // and r.Duration
	})
	err := check.Check(ctx)
	slices.Sort(events)
	fmt.Println(strings.Join(events, "\n"))
	fmt.Println("error:", err)
	// Output:
	// any(primary-db,replica-db) ok=true
	// api ok=true
	// primary-db ok=false
	// replica-db ok=true
	// error: <nil>
}
