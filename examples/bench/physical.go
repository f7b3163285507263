package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// physical holds the throughputs (MB/s) of the stages a network install is
// made of, each measured alone on the image's length, and the CPU time
// each cost (core-seconds per GB): that of the processes at work (this one,
// the GET's client and the server), system time included; the kernel's
// own threads (journal commits, background writeback) are not counted.
type physical struct {
	sha, http, write          []float64
	shaCPU, httpCPU, writeCPU []float64
}

// measure runs each stage once: SHA-256 of size bytes (one core, this
// process), a loopback GET of the image into io.Discard (another process)
// and writing size bytes into a new file, then fsync.
func (ph *physical) measure(r *repo, work string) error {
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(buf)
	gb := float64(r.size) / 1e9
	start, cpu := time.Now(), selfCPU()
	h := sha256.New()
	for left := r.size; left > 0; left -= int64(len(buf)) {
		h.Write(buf[:min(left, int64(len(buf)))])
	}
	h.Sum(nil)
	ph.sha = append(ph.sha, float64(r.size)/1e6/time.Since(start).Seconds())
	ph.shaCPU = append(ph.shaCPU, (selfCPU()-cpu)/gb)

	srv := pidCPU(r.server.Process.Pid)
	rep, err := runRole("get", map[string]string{"BENCH_URL": r.url + "/targets/" + r.target.File})
	if err != nil {
		return fmt.Errorf("loopback GET: %w", err)
	}
	ph.http = append(ph.http, float64(r.size)/1e6/rep.Seconds)
	ph.httpCPU = append(ph.httpCPU, (rep.CPUSeconds+pidCPU(r.server.Process.Pid)-srv)/gb)

	path := filepath.Join(work, "write.img")
	defer os.Remove(path)
	start, cpu = time.Now(), selfCPU()
	if err := writeSync(path, buf, r.size); err != nil {
		return err
	}
	ph.write = append(ph.write, float64(r.size)/1e6/time.Since(start).Seconds())
	ph.writeCPU = append(ph.writeCPU, (selfCPU()-cpu)/gb)
	return nil
}

// selfCPU is the CPU time, in seconds, this process has used (all its
// threads, user and system); NaN where it cannot be read.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// pidCPU is the CPU time, in seconds, process pid has used (user and
// system, in ticks of 1/100 s, from /proc/PID/stat); NaN where it cannot
// be read.
func pidCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return math.NaN()
	}
	// The fields after the command name, which ends at the last ')':
	// state is the first of them, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return math.NaN()
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return math.NaN()
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return math.NaN()
	}
	return (ut + st) / 100
}

// writeSync writes size bytes of buf, repeated, into a new file at path,
// then fsyncs it.
func writeSync(path string, buf []byte, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// print prints the stages and the install (MB/s) against the slowest,
// then the CPU time of each and of the install (installCPU, core-seconds
// per GB), and the CPU ceiling they make.
func (ph *physical) print(out io.Writer, size int64, install float64, installCPU []float64) {
	stages := []struct {
		name    string
		xs, cpu []float64
	}{
		{"SHA-256 (one core)", ph.sha, ph.shaCPU},
		{"loopback HTTP GET", ph.http, ph.httpCPU},
		{"write+fsync of a new file", ph.write, ph.writeCPU},
	}
	slowest := stages[0]
	for _, s := range stages {
		fmt.Fprintf(out, "physical stage alone, %s, %s: %.1f MB/s (range %s)\n", s.name, human(size), median(s.xs), span(s.xs))
		if median(s.xs) < median(slowest.xs) {
			slowest = s
		}
	}
	fmt.Fprintf(out, "install/slowest physical stage (%s) throughput ratio: %.2f (goal ≥ 0.8)\n", slowest.name, install/median(slowest.xs))
	var sum float64
	for _, s := range stages {
		fmt.Fprintf(out, "CPU time of the stage alone, %s: %.2f core-s per GB (range %s)\n", s.name, median(s.cpu), span(s.cpu))
		sum += median(s.cpu)
	}
	ceiling := float64(runtime.NumCPU()) / sum * 1e3
	fmt.Fprintf(out, "CPU ceiling: the three stages' work takes %.2f core-s per GB, so %d cores run it at %.1f MB/s at most, %.2f of the slowest stage\n",
		sum, runtime.NumCPU(), ceiling, ceiling/median(slowest.xs))
	fmt.Fprintf(out, "CPU time of the install (device and server processes): %.2f core-s per GB (range %s), %.2f of the three stages'; install/CPU ceiling throughput ratio: %.2f\n",
		median(installCPU), span(installCPU), median(installCPU)/sum, install/ceiling)
}

// getOnly is the loopback HTTP stage alone: a GET read to the end and
// dropped.
func getOnly(url string) error {
	start, cpu := time.Now(), selfCPU()
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM(), CPUSeconds: selfCPU() - cpu})
}
