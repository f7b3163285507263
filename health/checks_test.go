package health

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// wantErr checks err against substrings: none means the check must pass.
func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if len(subs) == 0 {
		if err != nil {
			t.Fatalf("got %v, want pass", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got pass, want an error containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("got %q, want it to contain %q", err, s)
		}
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	tests := []struct {
		name string
		addr string
		want []string
	}{
		{"listening", ln.Addr().String(), nil},
		{"nothing listening", goneAddr, []string{"connect to " + goneAddr}},
		{"no port", "127.0.0.1", []string{"connect to 127.0.0.1", "port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := TCP(tt.addr)
			if got, want := c.Name(), "tcp:"+tt.addr; got != want {
				t.Errorf("name: got %q, want %q", got, want)
			}
			wantErr(t, c.Check(guard(t)), tt.want...)
		})
	}
}

func TestCommand(t *testing.T) {
	sh := ci.LookPath(t, "sh", "dash")
	ci.LookPath(t, "true", "coreutils")
	ci.LookPath(t, "false", "coreutils")
	dir := t.TempDir()
	tests := []struct {
		name string
		cmd  string
		args []string
		opts []CommandOption
		want []string
	}{
		{"true", "true", nil, nil, nil},
		{"false", "false", nil, nil, []string{"false: exit status 1", "no output"}},
		{"exit status and output", sh, []string{"-c", "echo to stdout; echo to stderr >&2; exit 3"}, nil,
			[]string{"exit status 3", "to stdout", "to stderr"}},
		{"bounded tail", sh, []string{"-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 1"},
			[]CommandOption{WithOutputTail(32)}, []string{"exit status 1", "...", "line 1999"}},
		{"dir", sh, []string{"-c", `test "$(pwd)" = "$1"`, "sh", dir}, []CommandOption{WithDir(dir)}, nil},
		{"env", sh, []string{"-c", `test "$HEALTH_X" = yes && test -z "$HOME"`}, []CommandOption{WithEnv([]string{"HEALTH_X=yes"})}, nil},
		{"not found", "switchback-no-such-program", nil, nil, []string{"switchback-no-such-program", "not found"}},
		{"killed at timeout", sh, []string{"-c", "exec sleep 60"}, []CommandOption{Timeout(50 * time.Millisecond)},
			[]string{"timed out", "killed"}},
		{"no command", "", nil, nil, []string{"no command given"}},
		{"negative tail", "true", nil, []CommandOption{WithOutputTail(-1)}, []string{"must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, CommandWith(tt.cmd, tt.args, tt.opts...).Check(guard(t)), tt.want...)
		})
	}
}

func TestCommandTailIsBounded(t *testing.T) {
	sh := ci.LookPath(t, "sh", "dash")
	err := CommandWith(sh, []string{"-c", "head -c 300000 /dev/zero | tr '\\0' x; exit 1"}, WithOutputTail(100)).Check(guard(t))
	if err == nil {
		t.Fatal("got pass, want exit status 1")
	}
	if got := len(err.Error()); got > 300 {
		t.Errorf("error is %d bytes long, want the output bounded to its tail", got)
	}
}

func TestCommandName(t *testing.T) {
	if got, want := Command("systemctl", "is-system-running").Name(), "command:systemctl"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		max    int
		writes []string
		want   string
	}{
		{10, nil, ""},
		{10, []string{"abc"}, "abc"},
		{10, []string{"abc", "def"}, "abcdef"},
		{5, []string{"abc", "def"}, "...bcdef"},
		{5, []string{"abcdefgh"}, "...defgh"},
		{5, []string{"abcdefgh", "ij"}, "...fghij"},
		{0, []string{"abc"}, ""},
		{8, []string{"a\nb\tc\x00"}, "a b c?"},
	}
	for _, tt := range tests {
		b := &tailBuffer{max: tt.max}
		for _, w := range tt.writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q): got %d, %v; want %d, nil", w, n, err, len(w))
			}
		}
		if got := b.String(); got != tt.want {
			t.Errorf("max %d, writes %q: got %q, want %q", tt.max, tt.writes, got, tt.want)
		}
	}
}

func TestFileAndSocketExists(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ready")
	if err := os.WriteFile(file, []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short: keep this one inside a short directory.
	sockDir, err := os.MkdirTemp("", "sbh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "ctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name  string
		check HealthCheck
		want  []string
	}{
		{"file", FileExists(file), nil},
		{"directory", FileExists(dir), nil},
		{"socket as file", FileExists(sock), nil},
		{"missing file", FileExists(missing), []string{missing + " does not exist"}},
		{"empty path", FileExists(""), []string{"no path given"}},
		{"socket", SocketExists(sock), nil},
		{"file as socket", SocketExists(file), []string{"is a regular file, not a socket"}},
		{"directory as socket", SocketExists(dir), []string{"is a directory, not a socket"}},
		{"missing socket", SocketExists(missing), []string{"does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.check.Check(guard(t)), tt.want...)
		})
	}
	if err := FileExists(missing).Check(guard(t)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want it to wrap os.ErrNotExist", err)
	}
}

func TestDiskFree(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		min  uint64
		want []string
	}{
		{"enough", dir, 1, nil},
		{"zero floor", dir, 0, nil},
		{"not enough", dir, math.MaxUint64, []string{"free on " + dir, "want at least 16.0 EiB"}},
		{"missing path", filepath.Join(dir, "missing"), 1, []string{"free space on", "no such file"}},
		{"empty path", "", 1, []string{"no path given"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DiskFree(tt.path, tt.min)
			if got, want := c.Name(), "disk:"+tt.path; got != want {
				t.Errorf("name: got %q, want %q", got, want)
			}
			wantErr(t, c.Check(guard(t)), tt.want...)
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{100 << 20, "100.0 MiB"},
		{3 << 30, "3.0 GiB"},
		{math.MaxUint64, "16.0 EiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d): got %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestMemoryFree(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("MemTotal: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, []byte(strings.Repeat("X: 1 kB\n", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
	const avail = 1048576 << 10 // testdata/meminfo's MemAvailable
	tests := []struct {
		name string
		path string
		min  uint64
		want []string
	}{
		{"enough", "testdata/meminfo", avail, nil},
		{"not enough", "testdata/meminfo", avail + 1, []string{"1.0 GiB of memory available, want at least 1.0 GiB"}},
		{"old kernel", "testdata/meminfo-old-kernel", 1, []string{"no MemAvailable"}},
		{"malformed", bad, 1, []string{bad, "line 1", "invalid syntax"}},
		{"too large", huge, 1, []string{"larger than"}},
		{"missing", filepath.Join(dir, "missing"), 1, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, MemoryFree(tt.min, WithMeminfo(tt.path)).Check(guard(t)), tt.want...)
		})
	}
}

func TestMemoryFreeRealProc(t *testing.T) {
	if _, err := os.Stat(DefaultMeminfo); err != nil {
		t.Skipf("no %s: %v", DefaultMeminfo, err)
	}
	if err := MemoryFree(1).Check(guard(t)); err != nil {
		t.Errorf("got %v, want at least one byte available", err)
	}
	if err := MemoryFree(math.MaxUint64).Check(guard(t)); err == nil {
		t.Error("got pass for 16 EiB, want an error")
	}
}

func TestUpdateServerReachable(t *testing.T) {
	errTUF := errors.New("timestamp.json: 503")
	tests := []struct {
		name    string
		refresh func(context.Context) error
		want    error
	}{
		{"refreshed", func(context.Context) error { return nil }, nil},
		{"refresh fails", func(context.Context) error { return errTUF }, errTUF},
		{"no refresh", nil, ErrServerUnreachable},
		{"refresh hangs", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := UpdateServerReachable(tt.refresh, Timeout(20*time.Millisecond))
			if got, want := c.Name(), "update-server"; got != want {
				t.Errorf("name: got %q, want %q", got, want)
			}
			err := c.Check(guard(t))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want pass", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrServerUnreachable) {
				t.Errorf("got %v, want it to wrap %v and ErrServerUnreachable", err, tt.want)
			}
		})
	}
}

// TestCommandKillsItsChildren runs a script that starts a child and hangs:
// at the timeout the child must die with it, not outlive the check.
func TestCommandKillsItsChildren(t *testing.T) {
	sh := ci.LookPath(t, "sh", "dash")
	ci.LookPath(t, "sleep", "coreutils")
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := `sleep 60 & echo $! > "$1"; wait`
	err := CommandWith(sh, []string{"-c", script, "sh", pidFile}, Timeout(200*time.Millisecond)).Check(guard(t))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want a timeout", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not record its child: %v", err)
	}
	pid := strings.TrimSpace(string(data))
	// SIGKILL is delivered asynchronously: wait (bounded by guard) until the
	// child is gone or a zombie.
	ctx := guard(t)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return // gone
		}
		// The state follows the ")" that closes the command name.
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return // killed, not yet reaped
		}
		select {
		case <-ctx.Done():
			t.Fatalf("child %s of the timed-out command is still running", pid)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
