package health

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]uint64
		wantErr string
	}{
		{"kB and plain", "MemAvailable:  1024 kB\nHugePages_Total:  3\n",
			map[string]uint64{"MemAvailable": 1 << 20, "HugePages_Total": 3}, ""},
		{"no trailing newline, blank lines, tabs", "\nMemFree:\t12 kB\n\n  MemAvailable: 0 kB",
			map[string]uint64{"MemFree": 12 << 10, "MemAvailable": 0}, ""},
		{"crlf", "MemAvailable: 2 kB\r\n", map[string]uint64{"MemAvailable": 2048}, ""},
		{"parenthesised keys", "Active(anon):  4 kB\n", map[string]uint64{"Active(anon)": 4096}, ""},
		{"empty", "", nil, "empty meminfo"},
		{"no colon", "MemAvailable 1024 kB\n", nil, "line 1"},
		{"empty key", ": 1 kB\n", nil, "line 1"},
		{"space in key", "Mem Available: 1 kB\n", nil, "line 1"},
		{"no value", "MemAvailable:\n", nil, "line 1"},
		{"negative", "MemAvailable: -1 kB\n", nil, "invalid syntax"},
		{"not a number", "MemFree: 1 kB\nMemAvailable: lots kB\n", nil, "line 2"},
		{"unknown unit", "MemAvailable: 1 MB\n", nil, `unknown unit "MB"`},
		{"too many fields", "MemAvailable: 1 kB extra\n", nil, "line 1"},
		{"overflow in kB", "MemAvailable: 18014398509481984 kB\n", nil, "out of range"},
		{"overflow", "MemAvailable: 18446744073709551616\n", nil, "out of range"},
		{"repeated", "MemAvailable: 1 kB\nMemAvailable: 2 kB\n", nil, "MemAvailable repeated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// formatMeminfo writes info back as meminfo text, values in bytes (no unit).
func formatMeminfo(info map[string]uint64) string {
	keys := make([]string, 0, len(info))
	for k := range info {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d\n", k, info[k])
	}
	return b.String()
}

func FuzzParseMeminfo(f *testing.F) {
	for _, p := range []string{"testdata/meminfo", "testdata/meminfo-old-kernel"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("MemAvailable: 1 kB"))
	f.Add([]byte("HugePages_Total:       0\n"))
	f.Add([]byte("MemAvailable: 18014398509481983 kB\n"))
	f.Add([]byte("A: 1\nA: 2\n"))
	f.Add([]byte(":\n"))
	f.Add([]byte("\r\n\t \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseMeminfo(data)
		if err != nil {
			if info != nil {
				t.Fatalf("error %v with a non-nil result %v", err, info)
			}
			return
		}
		if len(info) == 0 {
			t.Fatal("success with no fields")
		}
		// What was parsed must survive a round trip through the format.
		again, err := parseMeminfo([]byte(formatMeminfo(info)))
		if err != nil {
			t.Fatalf("reparsing %v: %v", info, err)
		}
		if fmt.Sprint(again) != fmt.Sprint(info) {
			t.Fatalf("round trip: got %v, want %v", again, info)
		}
	})
}
