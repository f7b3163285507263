package relay

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// parsePath never panics, and what it accepts stays under its prefix with
// no empty, "." or ".." segment.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/metadata/timestamp.json", "/metadata/1.root.json", "/metadata/", "/metadata/a/b",
		"/targets/rootfs/1.0/abcd.rootfs.img", "/targets/../x", "/targets//x", "/targets/./x",
		"/targets/", "/", "", "/metadata/..", "/targets/a\x00b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, name := parsePath(p)
		switch rt {
		case routeNone:
			if name != "" {
				t.Fatalf("rejected %q with name %q", p, name)
			}
		case routeMetadata:
			if p != MetadataPrefix+name || name == "" || strings.Contains(name, "/") || name == ".." || name == "." {
				t.Fatalf("%q accepted as metadata %q", p, name)
			}
		case routeTarget:
			if p != TargetsPrefix+name {
				t.Fatalf("%q accepted as target %q", p, name)
			}
			for _, seg := range strings.Split(name, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("%q accepted with segment %q", p, seg)
				}
			}
		}
	})
}

// lookup maps a requested name only to a signed target whose hash it
// carries (consistent snapshots) or whose path it is.
func FuzzLookup(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	d, _ := hex.DecodeString(sum)
	targets := map[string]*metadata.TargetFiles{
		"rootfs/1.0/rootfs.img": {Length: 3, Hashes: metadata.Hashes{"sha256": d}, Path: "rootfs/1.0/rootfs.img"},
		"top.bin":               {Length: 3, Hashes: metadata.Hashes{"sha512": append(d, d...)}, Path: "top.bin"},
	}
	for _, s := range []string{"rootfs/1.0/" + sum + ".rootfs.img", "rootfs/1.0/rootfs.img", sum + ".top.bin", "top.bin", ".", "a/.b", sum + "."} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, rel string, consistent bool) {
		s := &metaSet{targets: targets, consistent: consistent}
		tf, ok := s.lookup(rel)
		if !ok {
			return
		}
		if !consistent {
			if rel != tf.Path {
				t.Fatalf("%q resolved to %q", rel, tf.Path)
			}
			return
		}
		dir, file := "", rel
		if i := strings.LastIndexByte(rel, '/'); i >= 0 {
			dir, file = rel[:i+1], rel[i+1:]
		}
		prefix, name, _ := strings.Cut(file, ".")
		if dir+name != tf.Path {
			t.Fatalf("%q resolved to %q", rel, tf.Path)
		}
		for _, h := range tf.Hashes {
			if hex.EncodeToString(h) == prefix {
				return
			}
		}
		t.Fatalf("%q resolved to %q without its hash", rel, tf.Path)
	})
}
