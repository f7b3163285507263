package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

func img(path, component, version string, hw ...string) Target {
	sum := sha256.Sum256([]byte(path))
	return Target{
		Path:   path,
		Length: 10,
		Hashes: map[string][]byte{SHA256: sum[:]},
		Custom: Custom{Component: component, Version: version, Hardware: hw},
	}
}

func withMin(t Target, min string) Target   { t.Custom.MinVersion = min; return t }
func withKind(t Target, kind string) Target { t.Custom.Kind = kind; return t }

func TestSelect(t *testing.T) {
	sumOf := func(path string) string { s := sha256.Sum256([]byte(path)); return hex.EncodeToString(s[:]) }
	catalog := []Target{
		img("app/1.0.0", "app", "1.0.0", "board-a"),
		img("app/1.1.0", "app", "1.1.0", "board-a", "board-b"),
		img("app/1.2.0-rc.1", "app", "1.2.0-rc.1", "*"),
		img("app/1.10.0-b", "app", "1.10.0", "board-b"),
		withMin(img("app/2.0.0", "app", "2.0.0", "board-a"), "1.1.0"),
		withKind(img("app/2.1.0.patch", "app", "2.1.0", "*"), KindPatch),
		img("rootfs/5.0.0", "rootfs", "v5.0.0", "*"),
		img("rootfs/5.0.0-a", "rootfs", "5.0.0", "board-a"),
	}
	tests := []struct {
		name     string
		p        Policy
		wantPath string
		wantErr  error
		wantText []string
	}{
		{name: "fresh install picks newest without min_version",
			p: Policy{Component: "app", Hardware: "board-a"}, wantPath: "app/1.2.0-rc.1"},
		{name: "min_version satisfied",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "1.1.0"}, wantPath: "app/2.0.0"},
		{name: "min_version not satisfied falls back to older newer",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "1.0.0"}, wantPath: "app/1.2.0-rc.1"},
		{name: "semver order not string order",
			p: Policy{Component: "app", Hardware: "board-b", Installed: "1.2.0"}, wantPath: "app/1.10.0-b"},
		{name: "equal to installed",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "2.0.0"}, wantErr: ErrNoUpdate, wantText: []string{"newest published 2.0.0"}},
		{name: "equal with v prefix",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "v2.0.0"}, wantErr: ErrNoUpdate},
		{name: "installed newer than everything",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "3.0.0"}, wantErr: ErrNoUpdate},
		{name: "downgrade allowed",
			p: Policy{Component: "app", Hardware: "board-b", Installed: "3.0.0", AllowDowngrade: true}, wantPath: "app/1.10.0-b"},
		{name: "downgrade allowed still prefers newest",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "1.1.0", AllowDowngrade: true}, wantPath: "app/2.0.0"},
		{name: "downgrade allowed but installed version still published",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "2.0.0", AllowDowngrade: true}, wantErr: ErrNoUpdate},
		{name: "downgrade allowed but newer blocked release published",
			p:       Policy{Component: "app", Hardware: "board-a", Installed: "1.2.0-rc.1", AllowDowngrade: true, Blocked: func(s string) bool { return s == sumOf("app/2.0.0") }},
			wantErr: ErrIncompatible},
		{name: "downgrade allowed after installed release pulled",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "2.5.0", AllowDowngrade: true}, wantPath: "app/2.0.0"},
		{name: "downgrade allowed counts only this hardware's releases",
			p: Policy{Component: "app", Hardware: "board-b", Installed: "2.0.0", AllowDowngrade: true}, wantPath: "app/1.10.0-b"},
		{name: "downgrade allowed but only installed version",
			p: Policy{Component: "rootfs", Hardware: "board-a", Installed: "5.0.0", AllowDowngrade: true}, wantErr: ErrNoUpdate},
		{name: "unknown component",
			p: Policy{Component: "kernel", Hardware: "board-a"}, wantErr: ErrNotPublished, wantText: []string{"published: kernel"}},
		{name: "wrong hardware",
			p: Policy{Component: "app", Hardware: "board-c", Installed: "1.2.0"}, wantErr: ErrIncompatible,
			wantText: []string{`app/1.10.0-b (1.10.0): hardware "board-c" not in ["board-b"]`, "app/2.0.0 (2.0.0)"}},
		{name: "prerelease installed satisfies min_version",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "1.2.0-rc.1", Blocked: func(string) bool { return false }}, wantPath: "app/2.0.0"},
		{name: "explicit hardware beats wildcard at equal version",
			p: Policy{Component: "rootfs", Hardware: "board-a"}, wantPath: "rootfs/5.0.0-a"},
		{name: "wildcard for other hardware",
			p: Policy{Component: "rootfs", Hardware: "board-z"}, wantPath: "rootfs/5.0.0"},
		{name: "blocked newest skipped",
			p:        Policy{Component: "app", Hardware: "board-a", Installed: "1.1.0", Blocked: func(s string) bool { return s == sumOf("app/2.0.0") }},
			wantPath: "app/1.2.0-rc.1"},
		{name: "all newer blocked",
			p:       Policy{Component: "app", Hardware: "board-a", Installed: "1.2.0-rc.1", Blocked: func(string) bool { return true }},
			wantErr: ErrIncompatible, wantText: []string{"blocked"}},
		{name: "patches never selected",
			p: Policy{Component: "app", Hardware: "board-z", Installed: "2.0.0"}, wantErr: ErrNoUpdate},
		{name: "invalid installed version",
			p: Policy{Component: "app", Hardware: "board-a", Installed: "latest"}, wantText: []string{`"latest" of app is not a semantic version`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(catalog, tt.p)
			if tt.wantPath != "" {
				if err != nil {
					t.Fatalf("Select = %v, want %s", err, tt.wantPath)
				}
				if got.Path != tt.wantPath {
					t.Errorf("Select = %s, want %s", got.Path, tt.wantPath)
				}
				return
			}
			if err == nil {
				t.Fatalf("Select = %s, want an error", got.Path)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Select error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && (errors.Is(err, ErrNoUpdate) || errors.Is(err, ErrIncompatible)) {
				t.Errorf("Select error = %v, want neither ErrNoUpdate nor ErrIncompatible", err)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Select error = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

// TestSelectReasons: each reason Select gives is reachable with errors.Is,
// and none is mistaken for another (the device CLI's exit status rests on
// it).
func TestSelectReasons(t *testing.T) {
	catalog := []Target{
		img("app/1.0.0", "app", "1.0.0", "board-a"),
		img("app/2.0.0", "app", "2.0.0", "board-a"),
	}
	all := []error{ErrNoUpdate, ErrNotPublished, ErrIncompatible, ErrBlocked, ErrBadVersion}
	tests := []struct {
		name string
		p    Policy
		want []error
	}{
		{"up to date", Policy{Component: "app", Hardware: "board-a", Installed: "2.0.0"}, []error{ErrNoUpdate}},
		{"component not published", Policy{Component: "kernel", Hardware: "board-a"}, []error{ErrNoUpdate, ErrNotPublished}},
		{"wrong hardware", Policy{Component: "app", Hardware: "board-b", Installed: "1.0.0"}, []error{ErrIncompatible}},
		{"blocklisted", Policy{Component: "app", Hardware: "board-a", Installed: "1.0.0", Blocked: func(string) bool { return true }},
			[]error{ErrIncompatible, ErrBlocked}},
		{"installed not semver", Policy{Component: "app", Hardware: "board-a", Installed: "factory"}, []error{ErrBadVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Select(catalog, tt.p)
			for _, sentinel := range all {
				if got, want := errors.Is(err, sentinel), slices.Contains(tt.want, sentinel); got != want {
					t.Errorf("errors.Is(%q, %q) = %v, want %v", err, sentinel, got, want)
				}
			}
		})
	}
}

func TestSelectMinVersionNeedsInstalled(t *testing.T) {
	targets := []Target{withMin(img("app/2.0.0", "app", "2.0.0", "*"), "1.0.0")}
	_, err := Select(targets, Policy{Component: "app", Hardware: "x"})
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "needs an installed version") {
		t.Errorf("Select = %v, want ErrIncompatible about the missing installed version", err)
	}
}

func TestSelectRefusesInvalidCustom(t *testing.T) {
	bad := img("app/9.0.0", "app", "9.0.0") // no hardware
	_, err := Select([]Target{bad}, Policy{Component: "app", Hardware: "x", Installed: "1.0.0"})
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "hardware list missing") {
		t.Errorf("Select = %v, want ErrIncompatible naming the malformed custom", err)
	}
}

func TestTargetSHA256(t *testing.T) {
	tg := img("a", "app", "1.0.0", "*")
	s := sha256.Sum256([]byte("a"))
	if got, want := tg.SHA256(), hex.EncodeToString(s[:]); got != want {
		t.Errorf("SHA256 = %s, want %s", got, want)
	}
	tg.Hashes = map[string][]byte{SHA512: make([]byte, 64)}
	if got := tg.SHA256(); got != "" {
		t.Errorf("SHA256 without sha256 = %q, want empty", got)
	}
}

func FuzzSelect(f *testing.F) {
	f.Add("1.0.0", "2.0.0", "1.5.0", "", "board", false)
	f.Add("1.0.0", "1.0.0", "", "1.0.0", "*", true)
	f.Add("v3.0.0-rc.1", "3.0.0", "2.0.0", "2.0.0", "x", false)
	f.Add("bogus", "1.0", "", "0.0.1", "", true)
	f.Fuzz(func(t *testing.T, v1, v2, installed, min, hw string, down bool) {
		targets := []Target{
			withMin(img("a", "app", v1, hw), min),
			img("b", "app", v2, "*"),
		}
		p := Policy{Component: "app", Hardware: "board", Installed: installed, AllowDowngrade: down}
		got, err := Select(targets, p)
		if err != nil {
			return
		}
		if verr := got.Custom.Validate(); verr != nil {
			t.Fatalf("selected invalid custom: %v", verr)
		}
		if installed != "" {
			c := CompareVersions(got.Custom.Version, installed)
			if c == 0 || (c < 0 && !down) {
				t.Fatalf("selected %s with %s installed (downgrade %v)", got.Custom.Version, installed, down)
			}
		}
		for _, o := range targets {
			if refuse(o, p) == nil && CompareVersions(o.Custom.Version, got.Custom.Version) > 0 &&
				(installed == "" || CompareVersions(o.Custom.Version, installed) != 0) {
				t.Fatalf("selected %s but %s fits and is newer", got.Custom.Version, o.Custom.Version)
			}
		}
	})
}

func TestSelectPatchAndChunkIndex(t *testing.T) {
	image := img("app/app-2.0.0.img", "app", "2.0.0", "*")
	image.Length = 4096
	imgSum := image.SHA256()
	zimage := img("app/app-2.0.0.img.zst", "app", "2.0.0", "*")
	zimage.Custom.Compression = CompressionZstd
	zimage.Custom.Uncompressed = &Digest{Length: 4096, SHA256: imgSum}
	base := strings.Repeat("ab", 32)
	patch := func(path, of, baseSum, format string, length int64, out Digest) Target {
		p := img(path, "app", "2.0.0", "*")
		p.Length = length
		p.Custom.Kind, p.Custom.Of, p.Custom.Base, p.Custom.Format = KindPatch, of, baseSum, format
		p.Custom.Uncompressed = &out
		return p
	}
	good := Digest{Length: 4096, SHA256: imgSum}
	targets := []Target{
		image, zimage,
		patch("p/big", image.Path, base, "bsdiff", 900, good),
		patch("p/small", image.Path, base, "bsdiff", 300, good),
		patch("p/other-base", image.Path, strings.Repeat("cd", 32), "bsdiff", 10, good),
		patch("p/wrong-output", image.Path, base, "bsdiff", 20, Digest{Length: 4096, SHA256: strings.Repeat("00", 32)}),
		patch("p/unknown-format", image.Path, base, "xdelta9", 30, good),
		patch("p/for-zst", zimage.Path, strings.ToUpper(base), "bsdiff", 400, good),
	}
	bsdiff := func(f string) bool { return f == "bsdiff" }
	if p, ok := SelectPatch(targets, image, base, bsdiff); !ok || p.Path != "p/small" {
		t.Errorf("SelectPatch(image) = %s, %v; want p/small", p.Path, ok)
	}
	if p, ok := SelectPatch(targets, image, base, nil); !ok || p.Path != "p/unknown-format" {
		t.Errorf("SelectPatch(image, any format) = %s, %v; want the smallest, p/unknown-format", p.Path, ok)
	}
	if p, ok := SelectPatch(targets, zimage, base, bsdiff); !ok || p.Path != "p/for-zst" {
		t.Errorf("SelectPatch(zstd image) = %s, %v; want p/for-zst (output checked against the uncompressed digest)", p.Path, ok)
	}
	if p, ok := SelectPatch(targets, image, strings.Repeat("ef", 32), nil); ok {
		t.Errorf("SelectPatch(unknown base) = %s, want none", p.Path)
	}

	idx := img("i/app-2.0.0.caidx", "app", "2.0.0", "*")
	idx.Custom.Kind, idx.Custom.Of, idx.Custom.Format = KindChunkIndex, image.Path, "casync"
	other := idx
	other.Path, other.Custom.Of = "i/other", "app/app-1.0.0.img"
	targets = append(targets, idx, other)
	if got, ok := SelectChunkIndex(targets, image, func(f string) bool { return f == "casync" }); !ok || got.Path != idx.Path {
		t.Errorf("SelectChunkIndex = %s, %v; want %s", got.Path, ok, idx.Path)
	}
	if got, ok := SelectChunkIndex(targets, image, func(string) bool { return false }); ok {
		t.Errorf("SelectChunkIndex(no format accepted) = %s, want none", got.Path)
	}
	// Patches and indexes are never picked as images.
	if got, err := Select(targets, Policy{Component: "app", Hardware: "x", Installed: "1.0.0"}); err != nil || got.Custom.Kind != "" {
		t.Errorf("Select = %s (%q), %v; want an image", got.Path, got.Custom.Kind, err)
	}
}
