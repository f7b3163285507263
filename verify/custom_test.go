package verify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const sumA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var customSeeds = []struct {
	name    string
	raw     string
	wantErr string // "" means valid
}{
	{"image", `{"component":"rootfs","version":"1.2.0","hardware":["board-a"]}`, ""},
	{"image kind and extras", `{"component":"app","version":"v2.0.0-rc.1+b5","hardware":["*"],"kind":"image","min_version":"1.0.0","future":{"x":1}}`, ""},
	{"patch", `{"component":"rootfs","version":"1.3.0","hardware":["a"],"kind":"patch","of":"rootfs/1.3.0.img","base":"` + sumA + `","format":"bsdiff","uncompressed":{"length":100,"sha256":"` + sumA + `"}}`, ""},
	{"chunk index", `{"component":"rootfs","version":"1.3.0","hardware":["a"],"kind":"chunk-index","of":"rootfs/1.3.0.img","format":"casync"}`, ""},
	{"zstd", `{"component":"rootfs","version":"1.3.0","hardware":["a"],"compression":"zstd","uncompressed":{"length":4096,"sha256":"` + sumA + `"}}`, ""},
	{"empty", ``, "no custom metadata"},
	{"null", `null`, "no custom metadata"},
	{"not json", `{"component":`, "malformed"},
	{"array", `[]`, "malformed"},
	{"missing component", `{"version":"1.0.0","hardware":["a"]}`, "component missing"},
	{"component with slash", `{"component":"a/b","version":"1.0.0","hardware":["a"]}`, "separator"},
	{"short version", `{"component":"a","version":"1.2","hardware":["a"]}`, "not a semantic version"},
	{"bad min_version", `{"component":"a","version":"1.2.0","min_version":"x","hardware":["a"]}`, "min_version"},
	{"no hardware", `{"component":"a","version":"1.2.0"}`, "hardware list missing"},
	{"empty hardware id", `{"component":"a","version":"1.2.0","hardware":[""]}`, "empty hardware id"},
	{"hardware not a list", `{"component":"a","version":"1.2.0","hardware":"a"}`, "malformed"},
	{"patch without base", `{"component":"a","version":"1.2.0","hardware":["a"],"kind":"patch","of":"x","format":"f","uncompressed":{"length":1,"sha256":"` + sumA + `"}}`, "patch needs"},
	{"patch bad base", `{"component":"a","version":"1.2.0","hardware":["a"],"kind":"patch","of":"x","base":"abc","format":"f","uncompressed":{"length":1,"sha256":"` + sumA + `"}}`, "not a hex sha256"},
	{"chunk index without of", `{"component":"a","version":"1.2.0","hardware":["a"],"kind":"chunk-index","format":"f"}`, "chunk index needs"},
	{"unknown kind", `{"component":"a","version":"1.2.0","hardware":["a"],"kind":"delta"}`, "unknown kind"},
	{"zstd without digest", `{"component":"a","version":"1.2.0","hardware":["a"],"compression":"zstd"}`, "without uncompressed"},
	{"unknown compression", `{"component":"a","version":"1.2.0","hardware":["a"],"compression":"xz"}`, "unknown compression"},
	{"negative uncompressed", `{"component":"a","version":"1.2.0","hardware":["a"],"compression":"zstd","uncompressed":{"length":-1,"sha256":"` + sumA + `"}}`, "negative"},
	{"rollout and channels", `{"component":"a","version":"1.2.0","hardware":["a"],"channels":["beta","stable"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s1","ramp":[{"after":"0s","percent":1},{"after":"24h","percent":10},{"after":"72h","percent":100}]}}`, ""},
	{"halted rollout", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"0s","percent":100}],"halted":true}}`, ""},
	{"rollout unknown field", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"0s","percent":100}],"halt":true}}`, "unknown field"},
	{"rollout no start", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"salt":"s","ramp":[{"after":"0s","percent":100}]}}`, "start missing"},
	{"rollout no salt", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","ramp":[{"after":"0s","percent":100}]}}`, "salt"},
	{"rollout no ramp", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s"}}`, "ramp must have"},
	{"rollout bad after", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"1 day","percent":100}]}}`, "after"},
	{"rollout after not increasing", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"1h","percent":1},{"after":"1h","percent":2}]}}`, "not after"},
	{"rollout percent decreasing", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"0s","percent":50},{"after":"1h","percent":2}]}}`, "decreases"},
	{"rollout percent over 100", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"0s","percent":101}]}}`, "not in [0, 100]"},
	{"rollout negative after", `{"component":"a","version":"1.2.0","hardware":["a"],"rollout":{"start":"2026-12-07T00:00:00Z","salt":"s","ramp":[{"after":"-1h","percent":1}]}}`, "negative"},
	{"bad channel", `{"component":"a","version":"1.2.0","hardware":["a"],"channels":["Beta"]}`, "channel"},
	{"empty channel", `{"component":"a","version":"1.2.0","hardware":["a"],"channels":[""]}`, "channel"},
}

func TestParseCustom(t *testing.T) {
	for _, tt := range customSeeds {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCustom([]byte(tt.raw))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCustom = %v, want success", err)
				}
				if c.Component == "" || c.Version == "" {
					t.Errorf("ParseCustom = %+v, want component and version", c)
				}
				return
			}
			if !errors.Is(err, ErrBadCustom) {
				t.Fatalf("ParseCustom = %+v, %v; want ErrBadCustom", c, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCustom = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"v1.0.0", "1.0.0", 0},
		{"1.10.0", "1.9.0", 1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0+build.2", "1.0.0+build.1", 0},
		{"garbage", "0.0.1", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzParseCustom(f *testing.F) {
	for _, s := range customSeeds {
		f.Add([]byte(s.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseCustom(raw)
		if err != nil {
			if !errors.Is(err, ErrBadCustom) {
				t.Fatalf("error %v does not wrap ErrBadCustom", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted custom does not validate: %v", err)
		}
		// A valid custom survives a round trip unchanged.
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseCustom(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		b2, _ := json.Marshal(c2)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed %s to %s", b, b2)
		}
	})
}
