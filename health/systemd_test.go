package health

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
)

// notifySocket creates a real unixgram socket like systemd's, points
// NOTIFY_SOCKET at it and returns it. Tests using it set the environment,
// so they must not run in parallel.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	// sun_path holds 108 bytes: t.TempDir can be longer than that.
	dir, err := os.MkdirTemp("", "sbn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// endMarker is sent by a test after the code under test is done: every
// datagram before it was sent by that code.
const endMarker = "TEST-END"

// received sends endMarker and returns every datagram before it.
func received(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	if err := (&Notifier{}).Notify(endMarker); err != nil {
		t.Fatalf("sending the end marker: %v", err)
	}
	var got []string
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v", err)
		}
		if s := string(buf[:n]); s != endMarker {
			got = append(got, s)
			continue
		}
		return got
	}
}

func TestNotifierMessages(t *testing.T) {
	conn := notifySocket(t)
	var n Notifier
	if !n.Enabled() {
		t.Fatal("Enabled: got false with NOTIFY_SOCKET set")
	}
	for _, err := range []error{
		n.Status("installing app 1.2.0"),
		n.Status("two\nlines\r\nhere"),
		n.Ready(),
		n.Notify("STATUS=committed", "READY=1"),
		n.Notify(),
		n.Stopping(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"STATUS=installing app 1.2.0", "STATUS=two lines here", "READY=1", "STATUS=committed\nREADY=1", "STOPPING=1"}
	if got := received(t, conn); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		t.Error("NOTIFY_SOCKET was unset: the caller's environment must be left alone")
	}
}

func TestNotifierOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000")
	var n *Notifier // nil works too
	if n.Enabled() {
		t.Error("Enabled: got true without NOTIFY_SOCKET")
	}
	for name, err := range map[string]error{
		"Ready":  n.Ready(),
		"Status": n.Status("x"),
		// Returns at once: no socket to ping.
		"Watchdog": n.Watchdog(context.Background(), func() bool { return true }),
	} {
		if err != nil {
			t.Errorf("%s: got %v, want a silent no-op", name, err)
		}
	}
}

func TestNotifierSendError(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "nobody-listens"))
	if err := (&Notifier{}).Ready(); err == nil {
		t.Error("Ready: got nil with a NOTIFY_SOCKET nobody listens on, want the error")
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "2000") // pings every millisecond
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	// Healthy for the first three intervals, then stalled; after three
	// unhealthy intervals the test stops the watchdog.
	const healthyTurns, unhealthyTurns = 3, 3
	var calls atomic.Int32
	stalled := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	healthy := func() bool {
		c := calls.Add(1)
		if c == healthyTurns+unhealthyTurns {
			close(stalled)
		}
		return c <= healthyTurns
	}
	done := make(chan error, 1)
	go func() { done <- (&Notifier{}).Watchdog(ctx, healthy) }()
	<-stalled
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watchdog: got %v, want nil after ctx ends", err)
	}
	got := received(t, conn)
	want := []string{"WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q: one ping per healthy interval, none after", got, want)
	}
	if os.Getenv("WATCHDOG_USEC") == "" || os.Getenv("NOTIFY_SOCKET") == "" {
		t.Error("the watchdog environment was unset")
	}
}

func TestWatchdogDisabled(t *testing.T) {
	tests := []struct {
		name, usec, pid string
		wantErr         bool
	}{
		{"no WATCHDOG_USEC", "", "", false},
		{"another process's watchdog", "1000", strconv.Itoa(os.Getpid() + 1), false},
		{"malformed WATCHDOG_USEC", "soon", "", true},
		{"negative WATCHDOG_USEC", "-5", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := notifySocket(t)
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			called := false
			err := (&Notifier{}).Watchdog(context.Background(), func() bool { called = true; return true })
			if (err != nil) != tt.wantErr {
				t.Errorf("got %v, want error %v", err, tt.wantErr)
			}
			if called {
				t.Error("healthy was called by a disabled watchdog")
			}
			if got := received(t, conn); len(got) != 0 {
				t.Errorf("got %q, want no datagrams", got)
			}
		})
	}
	if err := (&Notifier{}).Watchdog(context.Background(), nil); err == nil {
		t.Error("Watchdog(nil): got nil, want an error")
	}
}

func TestBootAssessment(t *testing.T) {
	errHealth := errors.New("http:/healthz: status 500")
	tests := []struct {
		name    string
		confirm func(context.Context) error
		want    []string
		wantErr error
	}{
		{"passes", func(context.Context) error { return nil },
			[]string{"STATUS=assessing this boot: running health checks", "STATUS=boot assessment passed"}, nil},
		{"fails", func(context.Context) error { return errHealth },
			[]string{"STATUS=assessing this boot: running health checks", "STATUS=boot assessment failed: http:/healthz: status 500"}, errHealth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := notifySocket(t)
			err := BootAssessment(context.Background(), &Notifier{}, tt.confirm)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
			if got := received(t, conn); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if err := BootAssessment(context.Background(), nil, nil); err == nil {
		t.Error("BootAssessment(nil confirm): got nil, want an error")
	}
}

// TestNotifierAbstractSocket: service managers may hand out an abstract
// socket ("@name"), which go-systemd and Go's net package support on Linux.
func TestNotifierAbstractSocket(t *testing.T) {
	name := "@switchback-health-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("no abstract unix sockets here: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	if err := (&Notifier{}).Ready(); err != nil {
		t.Fatal(err)
	}
	if got, want := received(t, conn), []string{"READY=1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
