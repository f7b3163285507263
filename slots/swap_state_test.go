package slots

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseSwapState(t *testing.T) {
	for _, c := range []struct {
		name string
		json string
		ok   bool
		want swapState
	}{
		{"minimal", `{"version":1,"primary":"a","tries_left":0}`, true, swapState{Version: 1, Primary: "a"}},
		{"trial", `{"version":1,"primary":"a","trial":"b","tries_left":3}`, true, swapState{Version: 1, Primary: "a", Trial: "b", TriesLeft: 3}},
		{"exhausted trial", `{"version":1,"primary":"a","trial":"b","tries_left":0}`, true, swapState{Version: 1, Primary: "a", Trial: "b"}},
		{"bad", `{"version":1,"primary":"b","tries_left":0,"bad":["a"]}`, true, swapState{Version: 1, Primary: "b", Bad: []string{"a"}}},
		{"unknown field ignored", `{"version":1,"primary":"a","tries_left":0,"future":true}`, true, swapState{Version: 1, Primary: "a"}},
		{"version 2", `{"version":2,"primary":"a"}`, false, swapState{}},
		{"no version", `{"primary":"a"}`, false, swapState{}},
		{"no primary", `{"version":1}`, false, swapState{}},
		{"unknown primary", `{"version":1,"primary":"c"}`, false, swapState{}},
		{"numeric primary", `{"version":1,"primary":0}`, false, swapState{}},
		{"unknown trial", `{"version":1,"primary":"a","trial":"z","tries_left":1}`, false, swapState{}},
		{"trial is primary", `{"version":1,"primary":"a","trial":"a","tries_left":1}`, false, swapState{}},
		{"tries without trial", `{"version":1,"primary":"a","tries_left":1}`, false, swapState{}},
		{"negative tries", `{"version":1,"primary":"a","trial":"b","tries_left":-1}`, false, swapState{}},
		{"absurd tries", `{"version":1,"primary":"a","trial":"b","tries_left":1000000}`, false, swapState{}},
		{"bad twice", `{"version":1,"primary":"a","tries_left":0,"bad":["b","b"]}`, false, swapState{}},
		{"unknown bad", `{"version":1,"primary":"a","tries_left":0,"bad":["q"]}`, false, swapState{}},
		{"trial bad", `{"version":1,"primary":"a","trial":"b","tries_left":1,"bad":["b"]}`, false, swapState{}},
		{"trailing data", `{"version":1,"primary":"a"} {}`, false, swapState{}},
		{"truncated", `{"version":1,"prim`, false, swapState{}},
		{"empty", ``, false, swapState{}},
		{"null", `null`, false, swapState{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSwapState([]byte(c.json), swapSlotNames)
			if (err == nil) != c.ok {
				t.Fatalf("parseSwapState(%s) error = %v, want ok=%v", c.json, err, c.ok)
			}
			if c.ok && !got.equal(c.want) {
				t.Errorf("parseSwapState(%s) = %+v, want %+v", c.json, got, c.want)
			}
		})
	}
}

func TestSwapStateTransitions(t *testing.T) {
	s0 := swapState{Version: 1, Primary: "a", Bad: []string{"b"}}
	armed := s0.arm("b", 2)
	if want := (swapState{Version: 1, Primary: "a", Trial: "b", TriesLeft: 2}); !armed.equal(want) {
		t.Errorf("arm = %+v, want %+v", armed, want)
	}
	var runs []string
	s := armed
	for range 4 {
		var run string
		s, run = s.start()
		runs = append(runs, run)
	}
	if got, want := runs, []string{"b", "b", "a", "a"}; !slices.Equal(got, want) {
		t.Errorf("starts ran %q, want %q", got, want)
	}
	if want := (swapState{Version: 1, Primary: "a", Bad: []string{"b"}}); !s.equal(want) {
		t.Errorf("after the tries ran out: %+v, want %+v", s, want)
	}
	c := armed.commit("b")
	if want := (swapState{Version: 1, Primary: "b"}); !c.equal(want) {
		t.Errorf("commit = %+v, want %+v", c, want)
	}
	if got := armed.markBad("b"); got.target() != "a" || got.Trial != "" {
		t.Errorf("markBad of the trial = %+v, want no trial, target a", got)
	}
	// Transitions never share the Bad slice with their input.
	x := swapState{Version: 1, Primary: "a", Bad: []string{"b"}}
	_ = x.markBad("a")
	if len(x.Bad) != 1 || x.Bad[0] != "b" {
		t.Errorf("markBad modified its input: %+v", x)
	}
}

// TestSwapStateFixtures parses the state files in testdata/, as written by
// this version of the package.
func TestSwapStateFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/swapstate/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseSwapState(data, swapSlotNames)
		wantOK := filepath.Base(f)[:3] != "bad"
		if (err == nil) != wantOK {
			t.Errorf("%s: error %v, want ok=%v", f, err, wantOK)
			continue
		}
		if wantOK && string(st.marshal()) != string(data) {
			t.Errorf("%s: re-encoded as\n%s\nwant the fixture byte for byte", f, st.marshal())
		}
	}
}

func FuzzParseSwapState(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"primary":"a","tries_left":0}`,
		`{"version":1,"primary":"a","trial":"b","tries_left":3,"bad":["b"]}`,
		`{"version":1,"primary":"b","tries_left":0,"bad":["a"]}`,
		`{"version":2}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseSwapState(data, swapSlotNames)
		if err != nil {
			return
		}
		again, err := parseSwapState(st.marshal(), swapSlotNames)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", st.marshal(), err)
		}
		if !again.equal(st) {
			t.Fatalf("round trip: %+v, want %+v", again, st)
		}
		// Every transition of a valid state is valid.
		next, _ := st.start()
		for _, s := range []swapState{next, st.commit("a"), st.markBad("b"), st.markBad(st.Primary)} {
			if err := s.validate(swapSlotNames); err != nil {
				t.Fatalf("transition of %+v gave %+v: %v", st, s, err)
			}
		}
		if st.Primary != "b" {
			if err := st.arm("b", 3).validate(swapSlotNames); err != nil {
				t.Fatalf("arm of %+v: %v", st, err)
			}
		}
	})
}
