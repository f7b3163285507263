package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSubsetKeepsFUAAndIsSeeded: a subset keeps every FUA write before its
// cut, nothing after it, and the same seed gives the same subsets.
func TestSubsetKeepsFUAAndIsSeeded(t *testing.T) {
	epoch := []logEntry{{Kind: logWrite}, {Kind: logFUA}, {Kind: logWrite}, {Kind: logFUA}, {Kind: logWrite}}
	draw := func(seed uint64) [][]bool {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var out [][]bool
		for i := 0; i < 200; i++ {
			out = append(out, subset(rng, epoch))
		}
		return out
	}
	a, b := draw(7), draw(7)
	seen := map[string]bool{}
	for i := range a {
		if string(boolBytes(a[i])) != string(boolBytes(b[i])) {
			t.Fatalf("subset %d differs under the same seed", i)
		}
		seen[string(boolBytes(a[i]))] = true
		last := -1
		for j, k := range a[i] {
			if k {
				last = j
			}
		}
		for j := 0; j < last; j++ {
			if epoch[j].Kind == logFUA && !a[i][j] {
				t.Fatalf("subset %v drops FUA write %d before a kept write", a[i], j)
			}
		}
	}
	if len(seen) < 8 {
		t.Errorf("only %d distinct subsets in 200 draws", len(seen))
	}
}

func boolBytes(b []bool) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		if v {
			out[i] = '1'
		} else {
			out[i] = '0'
		}
	}
	return out
}

// TestReplayApplyUndo: applying a subset of logged writes and undoing it
// gives back the disk, and applying all gives the logged contents.
func TestReplayApplyUndo(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "writes.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []logRecord{
		{Kind: logWrite, Offset: 0, Data: []byte("AAAA")},
		{Kind: logWrite, Offset: 2, Data: []byte("BBBB")},
		{Kind: logFUA, Offset: 8, Data: []byte("CC")},
		{Kind: logFlush},
	} {
		if err := writeLogRecord(f, r); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	entries, lf, err := readLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	base := bytes.Repeat([]byte{'.'}, 12)
	r := &replay{log: lf, disk: bytes.Clone(base)}
	tests := []struct {
		keep []bool
		want string
	}{
		{[]bool{true, false, true}, "AAAA....CC.."},
		{[]bool{false, true, false}, "..BBBB......"},
		{[]bool{true, true, true}, "AABBBB..CC.."},
	}
	for _, tt := range tests {
		undo, err := r.apply(entries[:3], tt.keep)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.disk) != tt.want {
			t.Errorf("keep %v: disk %q, want %q", tt.keep, r.disk, tt.want)
		}
		for i := len(undo) - 1; i >= 0; i-- {
			copy(r.disk[undo[i].off:], undo[i].old)
		}
		if !bytes.Equal(r.disk, base) {
			t.Errorf("keep %v: undo left %q", tt.keep, r.disk)
		}
	}
}

// TestAllowedEnv: the boot environments the design allows, and not.
func TestAllowedEnv(t *testing.T) {
	tests := []struct {
		env map[string]string
		ok  bool
	}{
		{map[string]string{"sb_primary": "a"}, true},
		{map[string]string{"sb_primary": "b", "sb_trial": "a", "sb_tries": "2"}, true},
		{map[string]string{"sb_primary": "b", "sb_trial": "a", "sb_tries": "0"}, true},
		{map[string]string{"sb_primary": ""}, false},
		{map[string]string{"sb_primary": "a", "sb_trial": "a", "sb_tries": "1"}, false},
		{map[string]string{"sb_primary": "a", "sb_trial": "c"}, false},
		{map[string]string{"sb_primary": "a", "sb_trial": "b", "sb_tries": "x"}, false},
	}
	for _, tt := range tests {
		if err := allowedEnv(tt.env); (err == nil) != tt.ok {
			t.Errorf("allowedEnv(%v) = %v, want ok=%v", tt.env, err, tt.ok)
		}
	}
}

// TestSampleStates: the sample takes each kind of state before a second
// of any kind, never the same state twice nor a failed one, stays within
// what exists, and is the same under the same seed.
func TestSampleStates(t *testing.T) {
	states := map[int]stateInfo{}
	for n := 0; n < 40; n++ {
		states[n] = stateInfo{Kind: "downloading"} // the common kind
	}
	states[40] = stateInfo{Kind: "armed"}
	states[41] = stateInfo{Kind: "confirming"}
	states[42] = stateInfo{Kind: "committed"}
	states[43] = stateInfo{Kind: "FAIL"}
	tests := []struct {
		name     string
		k        int
		want     int
		mustHave []int
	}{
		{"fewer than the kinds", 2, 2, nil},
		{"every kind", 4, 4, []int{40, 41, 42}},
		{"more", 10, 10, []int{40, 41, 42}},
		{"more than exist", 100, 43, []int{40, 41, 42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sampleStates(states, tt.k, 7)
			if len(got) != tt.want {
				t.Fatalf("sampleStates(k=%d) took %d states, want %d: %v", tt.k, len(got), tt.want, got)
			}
			seen := map[int]bool{}
			for _, n := range got {
				if seen[n] || n == 43 {
					t.Fatalf("sample %v repeats a state or takes the failed one", got)
				}
				seen[n] = true
			}
			for _, n := range tt.mustHave {
				if !seen[n] {
					t.Errorf("sample %v lacks state %d, the only one of its kind", got, n)
				}
			}
			if again := sampleStates(states, tt.k, 7); !slices.Equal(again, got) {
				t.Errorf("same seed: %v then %v", got, again)
			}
		})
	}
}

// TestPowercutTable: every cut is counted under its phase and what the next
// boot showed, and every cycle under its cut count and end.
func TestPowercutTable(t *testing.T) {
	results := []powercutResult{
		{Cuts: []powercutCut{{Phase: "state downloading", UpOn: "1.0.0"}, {Phase: "boot"}}, Outcome: "committed 2.0.0"},
		{Cuts: []powercutCut{{Phase: "state downloading", UpOn: "1.0.0"}}, Outcome: "committed 2.0.0"},
		{Cuts: []powercutCut{{Phase: "confirm", Fail: "offline check: x"}}, Outcome: "offline check: x"},
	}
	got := powercutTable(results)
	for _, want := range []string{
		"power cuts: 4 in 3 cycles",
		"state downloading        up on 1.0.0                  2",
		"boot                     cut again before the agent   1",
		"confirm                  FAILED                       1",
		"1 cuts, committed 2.0.0      1",
		"2 cuts, committed 2.0.0      1",
		"1 cuts, FAILED               1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
