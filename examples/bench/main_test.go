package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
// each figure is printed and sane: throughputs and memory positive, the
// printed ratio the ratio of the printed throughputs, every killed install
// resumed with a Range request and received at most one durable
// checkpoint interval twice, the idle check two requests (next root 404, timestamp 304).
// Every byte was verified: the baseline and fetch roles check the image's
// SHA-256 and updater.Install its signed hashes, or orchestrate fails. The
// physical stages are printed with the install against the slowest, the
// local-file installs with dd and zstd -dc | dd (zstd is required under
// CI) and RAUC or the reason it was skipped, the SMP uploads to the
// simulated MCU over UDP and DTLS (each verified by the MCU's SHA-256
// match, or orchestrate fails) with their baseline, and the container
// layer pull against skopeo copy (required under CI, where the registry,
// skopeo and root are there). No figure is judged against a speed (this
// is not a benchmark).
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several processes and writes 20 MiB to /tmp")
	}
	// 40 MB/s: the 16 MiB install lasts long enough to be killed at 25,
	// 50 and 75 % even on a fast machine.
	t.Setenv("BENCH_SERVER_RATE", "40000000")
	var out bytes.Buffer
	if err := orchestrate([]string{"-runs", "1", "-size", "16", "-small", "4", "-local", "8", "-smp-kib", "32", "-layer-mib", "4"}, &out); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	checkFigures(t, out.String())
}

// checkFigures judges the bench's output (see TestBenchSmall).
func checkFigures(t *testing.T, out string) {
	t.Helper()
	base := figure(t, out, `baseline \(net/http GET[^:]*, 16\.00 MiB: ([0-9.]+) MB/s`)
	figure(t, out, `transfer layer alone [^:]*, 16\.00 MiB: ([0-9.]+) MB/s`)
	inst := figure(t, out, `install through updater\.Install [^:]*, 16\.00 MiB: ([0-9.]+) MB/s`)
	ratio := figure(t, out, `install/baseline throughput ratio: ([0-9.]+)`)
	for name, v := range map[string]float64{"baseline": base, "install": inst, "ratio": ratio} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s: %v, want a positive figure", name, v)
		}
	}
	if base > 0 && math.Abs(ratio-inst/base) > 0.01+ratio*0.01 {
		t.Errorf("ratio %.2f, but %.1f / %.1f = %.2f", ratio, inst, base, inst/base)
	}
	for _, size := range []string{"4.00", "16.00"} {
		rss := figure(t, out, `peak RSS \(VmHWM\) of the installing process, `+size+` MiB image: ([0-9.]+) MiB`)
		if rss < 1 || rss > 1024 {
			t.Errorf("peak RSS for %s MiB: %.1f MiB, want a figure between 1 MiB and 1 GiB", size, rss)
		}
	}
	for _, pct := range []string{"25", "50", "75"} {
		m := regexp.MustCompile(`re-downloaded after SIGKILL at ` + pct + `% and restart: (.+) received twice .*; server wrote (.+) beyond one image .*; (\d+) target requests`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no figure for the kill at %s%%", pct)
			continue
		}
		if twice := parseHuman(t, m[1]); twice < 0 || twice > 4<<20 {
			t.Errorf("kill at %s%%: %s received twice, want at most the 4 MiB between durable checkpoints", pct, m[1])
		}
		if parseHuman(t, m[2]) < 0 {
			t.Errorf("kill at %s%%: server wrote %s beyond one image", pct, m[2])
		}
		if reqs, _ := strconv.Atoi(m[3]); reqs < 2 {
			t.Errorf("kill at %s%%: %d target requests, want the first and at least one resumed", pct, reqs)
		}
	}
	if !strings.Contains(out, "resume read-back, 16.00 MiB: verified→armed") {
		t.Errorf("output lacks the resume read-back figure")
	}
	checkPhysical(t, out, inst)
	checkLocal(t, out)
	checkSMP(t, out)
	checkOCI(t, out)
	m := regexp.MustCompile(`idle check \(nothing changed\): (\d+) requests, (\d+) response body bytes`).FindStringSubmatch(out)
	// The TUF workflow: the next root (404, whose page is the only body:
	// 19 bytes from Go's file server) and the timestamp (304, no body).
	if m == nil || m[1] != "2" || len(m[2]) > 2 {
		t.Errorf("idle check: %q, want 2 requests and no body beyond a 404 page", m)
	}
}

// checkPhysical judges the physical stages and the install (MB/s) against
// the slowest.
func checkPhysical(t *testing.T, out string, inst float64) {
	t.Helper()
	slowest := math.Inf(1)
	for _, stage := range []string{`SHA-256 \(one core\)`, `loopback HTTP GET`, `write\+fsync of a new file`} {
		v := figure(t, out, `physical stage alone, `+stage+`, 16\.00 MiB: ([0-9.]+) MB/s \(range [0-9.e+]+–[0-9.e+]+\)`)
		if !(v > 0) {
			t.Errorf("physical stage %s: %v MB/s, want a positive figure", stage, v)
		}
		slowest = min(slowest, v)
	}
	ratio := figure(t, out, `install/slowest physical stage \([^)]*\) throughput ratio: ([0-9.]+)`)
	if want := inst / slowest; math.Abs(ratio-want) > 0.01+want*0.01 {
		t.Errorf("install/slowest stage ratio %.2f, but %.1f / %.1f = %.2f", ratio, inst, slowest, want)
	}
	checkBare(t, out, inst, slowest)
	checkCPU(t, out, inst)
}

// checkBare judges the bare pipeline's figures (MB/s) against the slowest
// stage, and the install's against them.
func checkBare(t *testing.T, out string, inst, slowest float64) {
	t.Helper()
	var bare float64
	for _, name := range []string{`bare pipeline \(the stages' work`, `bare pipeline without SHA-256`} {
		v := figure(t, out, name+`.*, 16\.00 MiB: ([0-9.]+) MB/s \(range [0-9.e+]+–[0-9.e+]+\)`)
		r := figure(t, out, name+`.* MB/s \(range [^)]*\), ([0-9.]+) of the slowest physical stage`)
		cpu := figure(t, out, name+`.*; machine CPU ([0-9.]+) core-s per GB`)
		if !(v > 0) || !ratioOfPrinted(r, v, slowest, 0.05) || !(cpu >= 0) {
			t.Errorf("%s: %v MB/s, %v of the slowest stage (%.1f MB/s), %v core-s per GB; want a positive figure, its ratio and CPU", name, v, r, slowest, cpu)
		}
		if bare == 0 {
			bare = v
		}
	}
	if r := figure(t, out, `install/bare pipeline throughput ratio: ([0-9.]+)`); !ratioOfPrinted(r, inst, bare, 0.05) {
		t.Errorf("install/bare pipeline ratio %v, want %.1f / %.1f", r, inst, bare)
	}
}

// checkCPU judges the CPU time of the stages and of the install
// (core-seconds per GB), and the ceiling they make on this machine.
func checkCPU(t *testing.T, out string, inst float64) {
	t.Helper()
	var sum float64
	for _, stage := range []string{`SHA-256 \(one core\)`, `loopback HTTP GET`, `write\+fsync of a new file`} {
		m := figure(t, out, `CPU per GB of the stage alone, `+stage+`: machine ([0-9.]+) core-s`)
		p := figure(t, out, `CPU per GB of the stage alone, `+stage+`: .*, its processes ([0-9.]+)`)
		if !(m >= 0) || !(p >= 0) {
			t.Errorf("CPU of %s: machine %v, processes %v, want figures", stage, m, p)
		}
		sum += m
	}
	printedSum := figure(t, out, `CPU ceiling: the three stages' work takes ([0-9.]+) core-s per GB`)
	ceiling := figure(t, out, `CPU ceiling: .* run it at ([0-9.]+) MB/s at most`)
	if !(ceiling > 0) || math.Abs(printedSum-sum) > 0.011 {
		t.Errorf("CPU ceiling %.1f MB/s of %.2f core-s per GB, want a positive ceiling of the stages' sum %.2f", ceiling, printedSum, sum)
	}
	m := figure(t, out, `CPU per GB of the install: machine ([0-9.]+) core-s`)
	p := figure(t, out, `CPU per GB of the install: .*; device and server processes ([0-9.]+)`)
	ratio := figure(t, out, `install/CPU ceiling throughput ratio: ([0-9.]+)`)
	if !(m > 0) || !(p > 0) || !ratioOfPrinted(ratio, inst, ceiling, 0.05) {
		t.Errorf("install: machine %.2f, processes %.2f core-s per GB, %.2f of the ceiling; want positive CPU and %.1f / %.1f", m, p, ratio, inst, ceiling)
	}
}

// checkLocal judges the local-file figures: seconds, ratios and RSS.
func checkLocal(t *testing.T, out string) {
	t.Helper()
	secs := `([0-9.]+) s \(range [0-9.]+–[0-9.]+\)`
	dd := figure(t, out, `dd conv=fsync: `+secs)
	raw := figure(t, out, `updater\.InstallFile raw: `+secs)
	ratio := figure(t, out, `updater\.InstallFile raw: .*ratio to dd ([0-9.]+)`)
	if !(dd > 0) || !(raw > 0) || !ratioOfPrinted(ratio, raw, dd, 0.0005) {
		t.Errorf("local raw: dd %.3f s, InstallFile %.3f s, ratio %.2f", dd, raw, ratio)
	}
	if strings.Contains(out, "zstd -dc | dd skipped") {
		if os.Getenv("CI") == "true" {
			t.Errorf("zstd -dc | dd skipped under CI: install zstd (.ci/packages)")
		}
	} else {
		zdd := figure(t, out, `zstd -dc \| dd conv=fsync: `+secs)
		zst := figure(t, out, `updater\.InstallFile zstd: `+secs)
		zr := figure(t, out, `updater\.InstallFile zstd: .*ratio to zstd -dc \| dd ([0-9.]+)`)
		if !(zdd > 0) || !(zst > 0) || !ratioOfPrinted(zr, zst, zdd, 0.0005) {
			t.Errorf("local zstd: zstd | dd %.3f s, InstallFile %.3f s, ratio %.2f", zdd, zst, zr)
		}
	}
	if !strings.Contains(out, "RAUC: skipped: ") {
		if r := figure(t, out, `rauc install: `+secs); !(r > 0) {
			t.Errorf("rauc install: %v s, want a positive figure", r)
		}
	}
	if rss := figure(t, out, `peak RSS \(VmHWM\) of InstallFile, 8\.00 MiB image: ([0-9.]+) MiB`); rss < 1 || rss > 1024 {
		t.Errorf("peak RSS of InstallFile: %.1f MiB, want a figure between 1 MiB and 1 GiB", rss)
	}
}

// checkSMP judges the SMP upload figures: throughputs and their ratios
// to the baseline, over each link.
func checkSMP(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "SMP upload to the simulated MCU (smptest on 127.0.0.1, 384-byte SMP buffers") {
		t.Errorf("output lacks the SMP upload header")
	}
	mbps := `([0-9.]+) MB/s \(range [0-9.e+]+–[0-9.e+]+\)`
	for _, link := range []string{"UDP", `DTLS \(PSK\)`} {
		base := figure(t, out, `\n  `+link+`, baseline: [^:]*: `+mbps)
		for _, path := range []string{`smp\.Client\.Upload alone`, `smp slot \([^)]*\)`} {
			v := figure(t, out, `\n  `+link+`, `+path+`: `+mbps)
			ratio := figure(t, out, `\n  `+link+`, `+path+`: .*throughput ratio to the baseline ([0-9.]+)`)
			if !(base > 0) || !(v > 0) || math.Abs(ratio-v/base) > 0.02+ratio*0.03 {
				t.Errorf("SMP %s, %s: %.2f MB/s against a baseline of %.2f, printed ratio %.2f", link, path, v, base, ratio)
			}
		}
	}
}

// checkOCI judges the container layer pull: seconds, ratios and RSS, or
// the reason it was skipped (not under CI).
func checkOCI(t *testing.T, out string) {
	t.Helper()
	if m := regexp.MustCompile(`container layer pull: skipped: (.*)`).FindStringSubmatch(out); m != nil {
		if os.Getenv("CI") == "true" {
			t.Errorf("container layer pull skipped under CI: %s", m[1])
		}
		return
	}
	if !strings.Contains(out, "container layer pull, one layer of 4.00 MiB") {
		t.Errorf("output lacks the container layer pull header")
	}
	secs := `([0-9.]+) s \(range [0-9.]+–[0-9.]+\)`
	skopeo := figure(t, out, `skopeo copy \(process: [^)]*\): `+secs)
	for _, path := range []string{`oci Store\.Fetch \(fetch, verify, store\)`, `oci fetch \+ arm`, `oci pulling process \([^)]*\)`} {
		v := figure(t, out, path+`: `+secs)
		ratio := figure(t, out, path+`: .*time ratio to skopeo copy ([0-9.]+)`)
		if !(skopeo > 0) || !(v > 0) || math.Abs(ratio-v/skopeo) > 0.02+ratio*0.03 {
			t.Errorf("%s: %.3f s against skopeo copy's %.3f s, printed ratio %.2f", path, v, skopeo, ratio)
		}
	}
	if v := figure(t, out, `oci Arm after it \(unpack, fsync, arm\): `+secs); !(v > 0) {
		t.Errorf("oci Arm: %v s, want a positive figure", v)
	}
	if rss := figure(t, out, `peak RSS \(VmHWM\) of the pulling process: ([0-9.]+) MiB`); rss < 1 || rss > 1024 {
		t.Errorf("peak RSS of the pull: %.1f MiB, want a figure between 1 MiB and 1 GiB", rss)
	}
}

// figure returns the number the pattern's group matches in out.
func figure(t *testing.T, out, pattern string) float64 {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("output lacks %s", pattern)
		return math.NaN()
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Errorf("%s: %v", pattern, err)
	}
	return v
}

// parseHuman reads a size as human prints it.
func parseHuman(t *testing.T, s string) int64 {
	t.Helper()
	var v float64
	var unit string
	if _, err := fmt.Sscanf(s, "%g %s", &v, &unit); err != nil {
		t.Errorf("size %q: %v", s, err)
		return -1
	}
	mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		t.Errorf("size %q: unknown unit", s)
		return -1
	}
	return int64(v * mult)
}

func TestParseHuman(t *testing.T) {
	for _, n := range []int64{0, 1023, 1024, 32 << 10, 5<<20 + 12345, 1 << 30} {
		if got := parseHuman(t, human(n)); math.Abs(float64(got-n)) > float64(n)/100 {
			t.Errorf("parseHuman(human(%d) = %q) = %d", n, human(n), got)
		}
	}
}

// TestParseConfig checks the command line: defaults, sizes out of range
// refused, the profile prefix made absolute.
func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-runs", "1", "-size", "4", "-small", "4", "-local", "4", "-smp-kib", "0", "-layer-mib", "0"}, true},
		{[]string{"-smp-kib", "4096", "-smp-buf", "64"}, true},
		{[]string{"-runs", "0"}, false},
		{[]string{"-size", "3"}, false},
		{[]string{"-smp-kib", "4097"}, false},
		{[]string{"-smp-kib", "-1"}, false},
		{[]string{"-smp-buf", "63"}, false},
		{[]string{"-layer-mib", "-1"}, false},
		{[]string{"-no-such-flag"}, false},
	} {
		_, err := parseConfig(tc.args)
		if got := err == nil; got != tc.ok {
			t.Errorf("parseConfig(%q): error %v, want ok = %v", tc.args, err, tc.ok)
		}
	}
	c, err := parseConfig(nil)
	if err != nil || c.runs != 3 || c.sizeMiB != 1024 || c.smpKiB != 512 || c.smpBuf != 384 || c.layerMiB != 256 || c.profile != "" {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if c, err := parseConfig([]string{"-cpuprofile", "prof"}); err != nil || !filepath.IsAbs(c.profile) {
		t.Errorf("-cpuprofile prof: %q, %v; want an absolute prefix", c.profile, err)
	}
}

// ratioOfPrinted reports whether ratio is num/den, given that num and den
// were printed rounded to ±half (0.0005 for "%.3f s": a 0.030 s dd run may
// have taken 0.0296 s) and ratio itself to two decimals.
func ratioOfPrinted(ratio, num, den, half float64) bool {
	lo, hi := (num-half)/(den+half), (num+half)/max(den-half, half)
	return ratio >= lo*0.99-0.005 && ratio <= hi*1.01+0.005
}

func TestRatioOfPrinted(t *testing.T) {
	for _, c := range []struct {
		ratio, num, den float64
		want            bool
	}{
		{4.12, 0.122, 0.030, true}, // CI: 0.1220 / 0.0296
		{1.59, 0.390, 0.246, true},
		{2.00, 0.122, 0.030, false},
		{4.50, 0.122, 0.030, false},
	} {
		if got := ratioOfPrinted(c.ratio, c.num, c.den, 0.0005); got != c.want {
			t.Errorf("ratioOfPrinted(%v, %v, %v) = %v, want %v", c.ratio, c.num, c.den, got, c.want)
		}
	}
}
