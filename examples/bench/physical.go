package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// physical holds the throughputs (MB/s) of the stages a network install is
// made of, each measured alone on the image's length.
type physical struct {
	sha, http, write []float64
}

// measure runs each stage once: SHA-256 of size bytes (one core, this
// process), a loopback GET of the image into io.Discard (another process)
// and writing size bytes into a new file, then fsync.
func (ph *physical) measure(r *repo, work string) error {
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(buf)
	start := time.Now()
	h := sha256.New()
	for left := r.size; left > 0; left -= int64(len(buf)) {
		h.Write(buf[:min(left, int64(len(buf)))])
	}
	h.Sum(nil)
	ph.sha = append(ph.sha, float64(r.size)/1e6/time.Since(start).Seconds())

	rep, err := runRole("get", map[string]string{"BENCH_URL": r.url + "/targets/" + r.target.File})
	if err != nil {
		return fmt.Errorf("loopback GET: %w", err)
	}
	ph.http = append(ph.http, float64(r.size)/1e6/rep.Seconds)

	path := filepath.Join(work, "write.img")
	defer os.Remove(path)
	start = time.Now()
	if err := writeSync(path, buf, r.size); err != nil {
		return err
	}
	ph.write = append(ph.write, float64(r.size)/1e6/time.Since(start).Seconds())
	return nil
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

// print prints the stages and the install (MB/s) against the slowest.
func (ph *physical) print(out io.Writer, size int64, install float64) {
	stages := []struct {
		name string
		xs   []float64
	}{{"SHA-256 (one core)", ph.sha}, {"loopback HTTP GET", ph.http}, {"write+fsync of a new file", ph.write}}
	slowest := stages[0]
	for _, s := range stages {
		fmt.Fprintf(out, "physical stage alone, %s, %s: %.1f MB/s (range %s)\n", s.name, human(size), median(s.xs), span(s.xs))
		if median(s.xs) < median(slowest.xs) {
			slowest = s
		}
	}
	fmt.Fprintf(out, "install/slowest physical stage (%s) throughput ratio: %.2f (goal ≥ 0.8)\n", slowest.name, install/median(slowest.xs))
}

// getOnly is the loopback HTTP stage alone: a GET read to the end and
// dropped.
func getOnly(url string) error {
	start := time.Now()
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
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM()})
}
