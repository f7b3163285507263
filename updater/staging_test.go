package updater

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

// sensor is one microcontroller behind a gateway in these tests.
type sensor struct {
	name, hardware string
	boot           *slotstest.FakeBoot
}

func sensorComponents(sensors []sensor) []Component {
	var comps []Component
	for _, s := range sensors {
		a := slotstest.NewMemSlot("a", 1<<20, slotstest.WithBoot(s.boot))
		b := slotstest.NewMemSlot("b", 1<<20, slotstest.WithBoot(s.boot))
		comps = append(comps, Component{Name: s.name, Release: "sensor-fw", Hardware: s.hardware,
			Slots: []slots.Slot{a, b}, Boot: s.boot, FactoryVersion: "1.0.0"})
	}
	return comps
}

// TestSharedReleaseLine: components of two hardware kinds follow one
// release line; each gets its own kind's image, and each image crosses
// the network once however many components install it.
func TestSharedReleaseLine(t *testing.T) {
	for _, n := range []int{1, 10, 50} {
		t.Run(fmt.Sprintf("%d kind-a sensors", n), func(t *testing.T) {
			u, sensors, targetGets := newSensorFleet(t, n)
			ctx := context.Background()
			ups, err := u.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ups) != n+1 {
				t.Fatalf("%d updates, want %d", len(ups), n+1)
			}
			for _, up := range ups {
				want := "sensor/a-1.1.0.bin"
				if up.Component == "sensor-b" {
					want = "sensor/b-1.1.0.bin"
				}
				if up.Target.Path != want {
					t.Errorf("%s offered %s, want %s", up.Component, up.Target.Path, want)
				}
				if err := u.Install(ctx, up); err != nil {
					t.Fatalf("install %s: %v", up.Component, err)
				}
			}
			if gets := targetGets(); len(gets) != 2 || gets["a-1.1.0.bin"] != 1 || gets["b-1.1.0.bin"] != 1 {
				t.Errorf("target requests %v, want one per image", gets)
			}
			for _, s := range sensors {
				if bs, _ := s.boot.Status(ctx); bs.Trial != "b" {
					t.Errorf("%s: boot status %+v, want slot b armed", s.name, bs)
				}
			}
		})
	}
}

// newSensorFleet is an updater of n kind-a sensors and one kind-b sensor
// on the release line "sensor-fw", and a count of the target requests
// its server answered, by file name.
func newSensorFleet(tb testing.TB, n int) (*Updater, []sensor, func() map[string]int) {
	tb.Helper()
	repo := tuftest.New(tb)
	imgA, imgB := image("a 1.1.0", 70_000), image("b 1.1.0", 50_000)
	repo.AddTarget("sensor/a-1.1.0.bin", imgA, verify.Custom{Component: "sensor-fw", Version: "1.1.0", Hardware: []string{"kind-a"}})
	repo.AddTarget("sensor/b-1.1.0.bin", imgB, verify.Custom{Component: "sensor-fw", Version: "1.1.0", Hardware: []string{"kind-b"}})
	repo.Publish()
	var mu sync.Mutex
	gets := map[string]int{}
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if strings.HasPrefix(r.URL.Path, "/targets/") {
				_, file, _ := strings.Cut(path.Base(r.URL.Path), ".") // "<sha>.a-1.1.0.bin"
				gets[file]++
			}
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	var sensors []sensor
	for i := range n {
		sensors = append(sensors, sensor{name: fmt.Sprintf("sensor-%02d", i+1), hardware: "kind-a", boot: slotstest.NewFakeBoot("a", "b")})
	}
	sensors = append(sensors, sensor{name: "sensor-b", hardware: "kind-b", boot: slotstest.NewFakeBoot("a", "b")})
	u, err := New(Config{Hardware: hw, StateDir: tb.TempDir(), TrustedRoot: repo.Root(),
		MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(), Components: sensorComponents(sensors),
		Restart: func(context.Context, string) error { return nil }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { u.Close() })
	return u, sensors, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(gets)
	}
}

// BenchmarkSharedReleaseLine installs one release into N+1 components of
// two kinds and reports the target requests the server answered (goal: 2,
// one per image, whatever N).
func BenchmarkSharedReleaseLine(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var requests int
			for b.Loop() {
				b.StopTimer()
				u, _, targetGets := newSensorFleet(b, n)
				b.StartTimer()
				ups, err := u.Check(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				for _, up := range ups {
					if err := u.Install(context.Background(), up); err != nil {
						b.Fatal(err)
					}
				}
				requests = 0
				for _, c := range targetGets() {
					requests += c
				}
			}
			b.ReportMetric(float64(requests), "target-GETs")
		})
	}
}

// TestBlocklistPerComponent: a release that failed on one component is
// still offered to another on the same release line, and a state file of
// an earlier build (blocklist keyed by sha256 alone) keeps its meaning.
func TestBlocklistPerComponent(t *testing.T) {
	const sha = "00ff"
	fresh := &store{p: newPersisted()}
	fresh.block("sensor-07", sha, BlockedRelease{Component: "sensor-07", Version: "1.1.0", At: time.Unix(1, 0)})
	legacy, err := decodeState(fmt.Appendf(nil, `{"version":%d,"components":{},"blocklist":{%q:{"component":"sensor-07","version":"1.1.0"}}}`, stateVersion, sha))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    *store
	}{{"new entry", fresh}, {"earlier build's entry", &store{p: legacy}}} {
		if !tc.s.blockedFor("sensor-07")(sha) {
			t.Errorf("%s: not blocked for sensor-07", tc.name)
		}
		if tc.s.blockedFor("sensor-08")(sha) {
			t.Errorf("%s: blocked for sensor-08 too", tc.name)
		}
		if !tc.s.blocked(sha) {
			t.Errorf("%s: blocked() for any component is false", tc.name)
		}
	}
}

// TestStagingPrunedAndRechecked: a staged copy that a disk changed is
// fetched again, and staged files no trusted target names are removed.
func TestStagingPrunedAndRechecked(t *testing.T) {
	repo := tuftest.New(t)
	img := image("a 1.1.0", 30_000)
	repo.AddTarget("sensor/a-1.1.0.bin", img, verify.Custom{Component: "sensor-fw", Version: "1.1.0", Hardware: []string{"kind-a"}})
	repo.Publish()
	sensors := []sensor{{"s1", "kind-a", slotstest.NewFakeBoot("a", "b")}, {"s2", "kind-a", slotstest.NewFakeBoot("a", "b")}}
	dir := t.TempDir()
	u, err := New(Config{Hardware: hw, StateDir: dir, TrustedRoot: repo.Root(),
		MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(), Components: sensorComponents(sensors),
		Restart: func(context.Context, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx := context.Background()
	ups, err := u.Check(ctx)
	if err != nil || len(ups) != 2 {
		t.Fatalf("check: %v, %v", ups, err)
	}
	if err := u.Install(ctx, ups[0]); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(dir, stagingDir, ups[0].Target.SHA256())
	if err := os.WriteFile(staged, image("bit rot", 30_000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := u.Install(ctx, ups[1]); err != nil {
		t.Fatalf("install after the staged copy changed: %v", err)
	}
	if err := checkStaged(staged, ups[1].Target); err != nil {
		t.Errorf("staged copy not fetched again: %v", err)
	}
	repo.RemoveTarget("sensor/a-1.1.0.bin")
	repo.Publish()
	_, _ = u.Check(ctx)
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Errorf("staged file of a withdrawn target still there: %v", err)
	}
}
