package verify_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// Tests of the target search of TUF 5.6.7, written from the
// specification: which roles a lookup fetches, in which order, and which
// answer it gives. Request sequences are asserted: a search fetches only
// the roles it visits, each once.

// deleg is one delegation of a test graph.
type deleg struct {
	from, name  string // from "" is the top-level targets role
	paths       []string
	hashes      []string
	terminating bool
}

// lookupIn publishes a repository with the delegations, target in role
// holder at path p, runs Update, then Target(want), and returns the
// result and the metadata requested by the lookup alone.
func lookupIn(t *testing.T, graph []deleg, holder, p, want string) (verify.TargetInfo, []string, error) {
	t.Helper()
	r := newTestRepo(t, false)
	for _, d := range graph {
		r.delegateFrom(d.from, metadata.DelegatedRole{Name: d.name, Paths: d.paths, PathHashPrefixes: d.hashes, Terminating: d.terminating})
	}
	if holder != "" {
		r.addTarget(holder, p, []byte("bytes of "+p), nil)
	}
	r.publish()
	c := newClient(t, r, t.TempDir())
	tr, err := c.Update(context.Background())
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	before := len(r.requested())
	ti, err := tr.Target(context.Background(), want)
	return ti, roleRequests(r.requested()[before:]), err
}

// roleRequests turns "metadata/a.json" into "a".
func roleRequests(req []string) []string {
	out := []string{}
	for _, p := range req {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(p, "metadata/"), ".json"))
	}
	return out
}

func hexPrefix(p string, n int) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:])[:n]
}

func TestTargetSearch(t *testing.T) {
	const p = "dir/file.bin"
	notP := "0"
	if hexPrefix(p, 1) == "0" {
		notP = "1"
	}
	tests := []struct {
		name      string
		graph     []deleg
		holder    string // role listing p, "" none
		visits    []string
		wantFound bool
	}{
		{"top-level answers without fetching a role", []deleg{{"", "a", []string{"*"}, nil, false}}, "", []string{}, false},
		{"one level", []deleg{{"", "a", []string{"dir/*"}, nil, false}}, "a", []string{"a"}, true},
		{"nested", []deleg{{"", "a", []string{"dir/*"}, nil, false}, {"a", "b", []string{"dir/*"}, nil, false}}, "b", []string{"a", "b"}, true},
		{"pre-order, then backtrack to the next sibling",
			[]deleg{{"", "a", []string{"dir/*"}, nil, false}, {"", "b", []string{"dir/*"}, nil, false}, {"a", "c", []string{"dir/*"}, nil, false}},
			"b", []string{"a", "c", "b"}, true},
		{"the first role in order wins",
			[]deleg{{"", "a", []string{"dir/*"}, nil, false}, {"", "b", []string{"dir/*"}, nil, false}},
			"a", []string{"a"}, true},
		{"terminating role stops the backtracking",
			[]deleg{{"", "a", []string{"dir/*"}, nil, true}, {"", "b", []string{"dir/*"}, nil, false}},
			"b", []string{"a"}, false},
		{"terminating nested role stops the whole search",
			[]deleg{{"", "a", []string{"dir/*"}, nil, false}, {"", "b", []string{"dir/*"}, nil, false}, {"a", "c", []string{"dir/*"}, nil, true}},
			"b", []string{"a", "c"}, false},
		{"a role not trusted for the path is not visited",
			[]deleg{{"", "a", []string{"other/*"}, nil, false}, {"", "b", []string{"dir/*"}, nil, false}},
			"b", []string{"b"}, true},
		{"a target listed by a role not trusted for it is not found",
			[]deleg{{"", "a", []string{"other/*"}, nil, false}}, "a", []string{}, false},
		{"* does not cross /", []deleg{{"", "a", []string{"*"}, nil, false}}, "a", []string{}, false},
		{"matching is case-sensitive", []deleg{{"", "a", []string{"DIR/*"}, nil, false}}, "a", []string{}, false},
		{"? and character classes", []deleg{{"", "a", []string{"d?r/[a-f]ile.bin"}, nil, false}}, "a", []string{"a"}, true},
		{"cycle", []deleg{{"", "a", []string{"dir/*"}, nil, false}, {"a", "b", []string{"dir/*"}, nil, false}, {"b", "a", []string{"dir/*"}, nil, false}},
			"", []string{"a", "b"}, false},
		{"path hash prefix of the path's hex SHA-256",
			[]deleg{{"", "x", nil, []string{notP}, false}, {"", "a", nil, []string{hexPrefix(p, 2)}, false}},
			"a", []string{"a"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti, visits, err := lookupIn(t, tt.graph, tt.holder, p, p)
			if !slices.Equal(visits, tt.visits) {
				t.Errorf("roles fetched %q, want %q", visits, tt.visits)
			}
			switch {
			case tt.wantFound && err != nil:
				t.Errorf("Target: %v, want found in %s", err, tt.holder)
			case tt.wantFound && ti.Role != tt.holder:
				t.Errorf("found in %q, want %q", ti.Role, tt.holder)
			case !tt.wantFound && !errors.Is(err, verify.ErrTargetNotFound):
				t.Errorf("Target: %v, want ErrTargetNotFound", err)
			}
		})
	}
}

// TestTargetSearchBound: a chain of 40 roles is searched up to
// DefaultMaxDelegations visited roles (the top-level one included), as
// python-tuf and go-tuf do, then the target is not found.
func TestTargetSearchBound(t *testing.T) {
	var graph []deleg
	for i := 1; i <= 40; i++ {
		from := ""
		if i > 1 {
			from = fmt.Sprintf("r%d", i-1)
		}
		graph = append(graph, deleg{from, fmt.Sprintf("r%d", i), []string{"*"}, nil, false})
	}
	_, visits, err := lookupIn(t, graph, "r40", "f", "f")
	if !errors.Is(err, verify.ErrTargetNotFound) {
		t.Errorf("Target: %v, want ErrTargetNotFound", err)
	}
	if len(visits) != verify.DefaultMaxDelegations {
		t.Errorf("fetched %d roles, want %d", len(visits), verify.DefaultMaxDelegations)
	}
}

func TestTargetSearchSuccinct(t *testing.T) {
	r := newTestRepo(t, false)
	r.succinct("", "bin", 2)
	const p = "some/target"
	sum := sha256.Sum256([]byte(p))
	bin := fmt.Sprintf("bin-%x", sum[0]>>6)
	r.addTarget(bin, p, []byte("x"), nil)
	other := "bin-0"
	if bin == other {
		other = "bin-1"
	}
	r.addTarget(other, "elsewhere", []byte("y"), nil)
	r.publish()
	tr, err := newClient(t, r, t.TempDir()).Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.requested())
	ti, err := tr.Target(context.Background(), p)
	if err != nil || ti.Role != bin {
		t.Fatalf("Target = %+v, %v; want found in %s", ti, err, bin)
	}
	if got := roleRequests(r.requested()[before:]); !slices.Equal(got, []string{bin}) {
		t.Errorf("fetched %q, want only %s", got, bin)
	}
	// The bin of "elsewhere" is the one succinct delegation names; a
	// target listed in another bin is not found (bins are terminating).
	if _, err := tr.Target(context.Background(), "elsewhere"); err == nil && binOf("elsewhere") != other {
		t.Error("target listed in the wrong bin was found")
	}
}

func binOf(p string) string {
	sum := sha256.Sum256([]byte(p))
	return fmt.Sprintf("bin-%x", sum[0]>>6)
}

// TestCachedRoleVerifiedAgainstCurrentDelegator: a role reached through
// two delegators (a "diamond") is verified against the delegator of the
// current search, not trusted because another path to it verified
// (go-tuf issue #759, tuf-conformance
// test_cached_role_is_verified_against_current_delegator).
func TestCachedRoleVerifiedAgainstCurrentDelegator(t *testing.T) {
	r := newTestRepo(t, false)
	r.delegate("parent-a", []string{"team-a/*"}, false)
	r.delegate("parent-b", []string{"team-b/*"}, false)
	r.delegateFrom("parent-a", metadata.DelegatedRole{Name: "release", Paths: []string{"team-a/*"}})
	r.delegateFrom("parent-b", metadata.DelegatedRole{Name: "release", Paths: []string{"team-b/*"}})
	r.keys["release"] = r.keys["release"][:1] // signed by parent A's key only
	r.addTarget("release", "team-a/f", []byte("trusted A"), nil)
	r.addTarget("release", "team-b/f", []byte("malicious B"), nil)
	r.publish()
	for _, order := range [][]string{{"team-a/f", "team-b/f"}, {"team-b/f", "team-a/f"}} {
		tr, err := newClient(t, r, t.TempDir()).Update(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range order {
			_, err := tr.Target(context.Background(), p)
			if p == "team-a/f" && err != nil {
				t.Errorf("%q: %s: %v, want found", order, p, err)
			}
			if p == "team-b/f" && !errors.Is(err, verify.ErrUntrusted) {
				t.Errorf("%q: %s: %v, want ErrUntrusted", order, p, err)
			}
		}
	}
}

// TestDelegationNotInSnapshot: a delegated role the snapshot does not
// list cannot be trusted (TUF 5.6.7.2 loads roles per the snapshot).
func TestDelegationNotInSnapshot(t *testing.T) {
	r := newTestRepo(t, false)
	r.delegate("a", []string{"*"}, false)
	r.addTarget("a", "f", []byte("x"), nil)
	r.publish()
	r.mu.Lock()
	delete(r.snapshot.Signed.Meta, "a.json")
	r.snapshot.Signed.Version++
	tuftest.SignMetadata(t, r.snapshot, r.keys[metadata.SNAPSHOT]...)
	r.files["metadata/snapshot.json"] = tuftest.EncodeMetadata(t, r.snapshot)
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	r.timestamp.Signed.Version++
	tuftest.SignMetadata(t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	r.files["metadata/timestamp.json"] = tuftest.EncodeMetadata(t, r.timestamp)
	r.mu.Unlock()
	tr, err := newClient(t, r, t.TempDir()).Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.requested())
	if _, err := tr.Target(context.Background(), "f"); !errors.Is(err, verify.ErrUntrusted) {
		t.Errorf("Target: %v, want ErrUntrusted", err)
	}
	if got := r.requested()[before:]; len(got) != 0 {
		t.Errorf("requested %q for a role the snapshot does not list", got)
	}
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"*", "file", true},
		{"*", "dir/file", false},
		{"dir/*", "dir/file", true},
		{"dir/*", "dir/sub/file", false},
		{"*/*", "dir/file", true},
		{"dir/*.bin", "dir/a.bin", true},
		{"dir/*.bin", "dir/a.BIN", false},
		{"Dir/*", "dir/a", false},
		{"dir/file?", "dir/file1", true},
		{"dir/file?", "dir/file", false},
		{"dir/[ab]", "dir/a", true},
		{"dir/[ab]", "dir/c", false},
		{"dir/[!ab]", "dir/c", true},
		{"dir/[!ab]", "dir/a", false},
		{"dir/[a-c]x", "dir/bx", true},
		{"dir/[", "dir/[", true},
		{"app/hw1/*", "app/hw1/app-1.0.0", true},
		{"app/hw1/*", "app/hw2/app-1.0.0", false},
		{"", "", true},
		{"a/", "a/", true},
		{"*a*b", "xaxxb", true},
		{"*a*b", "xaxxc", false},
	}
	for _, tt := range tests {
		if got := verify.MatchPath(tt.pattern, tt.path); got != tt.want {
			t.Errorf("MatchPath(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

// FuzzMatchPath checks that "*" never crosses "/" and that a pattern
// without wildcards matches only itself.
func FuzzMatchPath(f *testing.F) {
	for _, s := range [][2]string{{"*", "a/b"}, {"a/*", "a/b"}, {"[!a]", "b"}, {"a?c", "abc"}, {"[", "["}, {"*x*y*", "axbyc"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		got := verify.MatchPath(pattern, path)
		if got && strings.Count(pattern, "/") != strings.Count(path, "/") {
			t.Errorf("MatchPath(%q, %q) matched across a /", pattern, path)
		}
		if !strings.ContainsAny(pattern, "*?[") && got != (pattern == path) {
			t.Errorf("MatchPath(%q, %q) = %v for a literal pattern", pattern, path, got)
		}
	})
}

// TestTargetsPerHardwareLayout: releases of one component spread over
// per-hardware delegated roles ("app/<hardware>/..."), some nested per
// vendor. Listing the prefix of one hardware fetches only the roles that
// may hold it (each once per Trusted), and Select still picks the newest release across roles.
func TestTargetsPerHardwareLayout(t *testing.T) {
	r := newTestRepo(t, true)
	r.delegate("hw1", []string{"app/hw1/*"}, true)
	r.delegate("hw2", []string{"app/hw2/*"}, true)
	r.delegate("vendors", []string{"app/*/*"}, false)
	r.delegateFrom("vendors", metadata.DelegatedRole{Name: "vendor-x", Paths: []string{"app/hw3/*"}})
	r.addTarget("hw1", "app/hw1/app-1.0.0", []byte("1.0.0"), customFor("app", "1.0.0", "hw1"))
	r.addTarget("hw1", "app/hw1/app-1.2.0", []byte("1.2.0"), customFor("app", "1.2.0", "hw1"))
	r.addTarget("hw2", "app/hw2/app-2.0.0", []byte("2.0.0"), customFor("app", "2.0.0", "hw2"))
	r.addTarget("vendor-x", "app/hw3/app-1.5.0", []byte("1.5.0"), customFor("app", "1.5.0", "hw3"))
	r.addTarget("vendor-x", "app/hw1/app-9.0.0", []byte("not its path"), customFor("app", "9.0.0", "hw1"))
	r.publish()
	c := newClient(t, r, t.TempDir())
	tr, err := c.Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		hw, want string
		fetched  []string
	}{
		// vendors may hold app/hw3/x (app/*/*), hw1 and hw2 may not.
		{"hw3", "app/hw3/app-1.5.0", []string{"vendors", "vendor-x"}},
		// vendors may hold app/hw1/x too, but it is loaded already;
		// vendor-x (app/hw3/*) may not.
		{"hw1", "app/hw1/app-1.2.0", []string{"hw1"}},
	} {
		before := len(r.requested())
		ts, err := tr.Targets(context.Background(), "app/"+tt.hw+"/")
		if err != nil {
			t.Fatal(err)
		}
		var fetched []string
		for _, p := range r.requested()[before:] {
			name := strings.TrimSuffix(p[strings.LastIndex(p, "/")+1:], ".json")
			fetched = append(fetched, name[strings.Index(name, ".")+1:])
		}
		if !slices.Equal(fetched, tt.fetched) {
			t.Errorf("%s: fetched %q, want %q", tt.hw, fetched, tt.fetched)
		}
		got, err := verify.Select(ts.Targets, verify.Policy{Component: "app", Hardware: tt.hw, Installed: "1.0.0"})
		if err != nil || got.Path != tt.want {
			t.Errorf("%s: Select = %s, %v; want %s", tt.hw, got.Path, err, tt.want)
		}
	}
	// The whole listing: every role, nested ones included; vendor-x's
	// app/hw1 release is refused (hw1 is terminating for app/hw1/*).
	ts, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app/hw1/app-1.0.0", "app/hw1/app-1.2.0", "app/hw2/app-2.0.0", "app/hw3/app-1.5.0"}
	if got := paths(ts.Targets); !slices.Equal(got, want) {
		t.Errorf("Refresh targets %q, want %q", got, want)
	}
	if len(ts.Rejected) != 1 || ts.Rejected[0].Path != "app/hw1/app-9.0.0" || !errors.Is(ts.Rejected[0].Err, verify.ErrUntrusted) {
		t.Errorf("Rejected = %+v, want app/hw1/app-9.0.0 untrusted", ts.Rejected)
	}
}

// TestRefreshPrefixes: Config.Prefixes limits Refresh, and the roles it
// fetches, to one hardware's paths.
func TestRefreshPrefixes(t *testing.T) {
	r := newTestRepo(t, false)
	r.delegate("hw1", []string{"app/hw1/*"}, true)
	r.delegate("hw2", []string{"app/hw2/*"}, true)
	r.addTarget("hw1", "app/hw1/app-1.0.0", []byte("1"), customFor("app", "1.0.0", "hw1"))
	r.addTarget("hw2", "app/hw2/app-1.0.0", []byte("2"), customFor("app", "1.0.0", "hw2"))
	r.addTarget("", "app/any-1.0.0", []byte("3"), customFor("app", "1.0.0", "*"))
	r.publish()
	c := newClientWith(t, r, t.TempDir(), func(cfg *verify.Config) { cfg.Prefixes = []string{"app/hw2/"} })
	before := len(r.requested())
	ts := refresh(t, c)
	if got := paths(ts.Targets); !slices.Equal(got, []string{"app/hw2/app-1.0.0"}) {
		t.Errorf("Targets %q, want only app/hw2/app-1.0.0", got)
	}
	if slices.Contains(r.requested()[before:], "metadata/hw1.json") {
		t.Error("the role of other hardware was fetched")
	}
}
