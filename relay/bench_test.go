package relay_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/updater"
)

// TestMain lets the memory benchmark run a relay in a child process (this
// test binary again), so that its peak RSS is the relay's alone.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(relayChild())
	}
	os.Exit(m.Run())
}

const childEnv = "SWITCHBACK_RELAY_BENCH_CHILD"

// relayChild serves a relay over TLS on 127.0.0.1 until stdin closes:
// configuration from the environment, its address on stdout once the
// targets are prefetched.
func relayChild() int {
	dir, metaURL, targetsURL := os.Getenv("RELAY_DIR"), os.Getenv("RELAY_METADATA_URL"), os.Getenv("RELAY_TARGETS_URL")
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := relay.New(relay.Config{Dir: dir, Root: root, MetadataURL: metaURL, TargetsURL: targetsURL, Hardware: []string{hw}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if err := r.Refresh(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := r.Prefetch(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ca, err := relay.LoadCA(filepath.Join(dir, "tls"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tc, err := ca.ServerTLS([]string{"127.0.0.1"}, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go http.Serve(ln, r)
	fmt.Println(ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// peakRSS reads a process's peak resident set size in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// BenchmarkRelayMemory50 measures the peak RSS of a relay process while 50
// edge devices download a 32 MiB image from it at once over TLS (goal:
// at most 64 MiB).
func BenchmarkRelayMemory50(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc")
	}
	repo := tuftest.New(b)
	img := publish(repo, "1.1.0", 32<<20)
	for b.Loop() {
		dir := b.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "root.json"), repo.Root(), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "RELAY_DIR="+dir,
			"RELAY_METADATA_URL="+repo.MetadataURL(), "RELAY_TARGETS_URL="+repo.TargetsURL())
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatalf("relay child: %v", err)
		}
		caPEM, err := os.ReadFile(filepath.Join(dir, "tls", relay.CACertFile))
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		url := "https://" + strings.TrimSpace(addr) + "/targets/" + repo.Target(imagePath("1.1.0")).File
		download50(b, url, pool, int64(len(img)))
		rss, err := peakRSS(cmd.Process.Pid)
		stdin.Close()
		cmd.Wait()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
}

// download50 downloads url 50 times at once, each with its own
// connection.
func download50(b *testing.B, url string, pool *x509.CertPool, length int64) {
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			defer c.CloseIdleConnections()
			res, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			n, err := io.Copy(io.Discard, res.Body)
			if err == nil && n != length {
				err = fmt.Errorf("got %d bytes, want %d", n, length)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkUplinkPerRelease measures the upstream bytes one release costs
// when N edge devices (real updaters, the relay as their only mirror)
// install it at once from a relay that has not prefetched it: the goal is
// one copy of each target whatever N ("uplink-copies" = upstream target
// bytes / release bytes).
func BenchmarkUplinkPerRelease(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			repo := tuftest.New(b)
			img := publish(repo, "1.1.0", 1<<20)
			for b.Loop() {
				r, _ := newRelay(b, repo, nil)
				if err := r.Refresh(context.Background()); err != nil {
					b.Fatal(err)
				}
				repo.ResetRequests()
				ca := loadCA(b)
				srv := serveTLS(b, r, ca, false)
				edges := make([]*edge, n)
				for i := range edges {
					edges[i] = newEdge(b, repo, func(c *updater.Config) { c.CAFile = ca.CertFile() }, srv.URL)
				}
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for _, e := range edges {
					wg.Go(func() {
						if _, err := e.update(context.Background()); err != nil {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				st := r.Stats()
				b.ReportMetric(float64(st.UplinkTargetBytes)/float64(len(img)), "uplink-copies")
				b.ReportMetric(float64(st.UplinkMetadataBytes), "uplink-meta-bytes")
				b.ReportMetric(float64(repo.Requests("/targets/"+repo.Target(imagePath("1.1.0")).File)), "upstream-target-GETs")
			}
		})
	}
}
