package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary play the bench's child processes (server,
// installer, baseline), as the command does by re-executing itself.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchSmall runs every measurement on small images and checks that
// each figure is printed; the figures themselves are not judged here.
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several processes and writes 20 MiB to /tmp")
	}
	// 40 MB/s: the 16 MiB install lasts long enough to be killed at 25,
	// 50 and 75 % even on a fast machine.
	t.Setenv("BENCH_SERVER_RATE", "40000000")
	var out bytes.Buffer
	if err := orchestrate([]string{"-runs", "1", "-size", "16", "-small", "4"}, &out); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"baseline (net/http GET", "transfer layer alone", "install through updater.Install",
		"install/baseline throughput ratio", "peak RSS (VmHWM) of the installing process, 4.00 MiB",
		"peak RSS (VmHWM) of the installing process, 16.00 MiB",
		"re-downloaded after SIGKILL at 25%", "re-downloaded after SIGKILL at 50%", "re-downloaded after SIGKILL at 75%",
		"idle check (nothing changed): ", "resume read-back, 16.00 MiB: verified→armed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
