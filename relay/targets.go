package relay

import (
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/verify"
)

type targetFile = metadata.TargetFiles

// fresh reports whether the set verified completely and has not expired
// at now: only then are timestamp, snapshot, targets and target files
// served.
func (s *metaSet) fresh(now time.Time) bool {
	return s.timestampVersion > 0 && now.Before(s.expires)
}

// hashesOf returns the trusted hashes of a target as raw digests.
func hashesOf(tf *targetFile) map[string][]byte {
	h := make(map[string][]byte, len(tf.Hashes))
	for alg, d := range tf.Hashes {
		h[alg] = []byte(d)
	}
	return h
}

// hashPrefix is the hex digest that prefixes a target's file name with
// consistent snapshots: sha256 when listed, else the first algorithm by
// name (verify's choice).
func hashPrefix(hashes map[string][]byte) string {
	if d, ok := hashes[verify.SHA256]; ok {
		return hex.EncodeToString(d)
	}
	algs := slices.Sorted(maps.Keys(hashes))
	if len(algs) == 0 {
		return ""
	}
	return hex.EncodeToString(hashes[algs[0]])
}

// lookup maps rel, a path under /targets/ as a TUF client asks for it, to
// the signed target it names. With consistent snapshots the file name
// carries the hex of one of the target's hashes ("<hex>.<name>"), which
// must match; without, rel is the target path itself.
func (s *metaSet) lookup(rel string) (*targetFile, bool) {
	if !s.consistent {
		tf, ok := s.targets[rel]
		return tf, ok
	}
	dir, file := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, file = rel[:i+1], rel[i+1:]
	}
	prefix, name, ok := strings.Cut(file, ".")
	if !ok || prefix == "" || name == "" {
		return nil, false
	}
	tf, ok := s.targets[dir+name]
	if !ok {
		return nil, false
	}
	for _, d := range tf.Hashes {
		if hex.EncodeToString(d) == prefix {
			return tf, true
		}
	}
	return nil, false
}

// prefetchSet picks the targets edge devices of the given hardware ids
// will ask for: for each component and hardware id, the image of the
// newest release, and every patch and chunk index that produces or
// describes one of those images and lists the hardware. Small targets
// come first, so that the indexes and patches are ready soonest.
func prefetchSet(targets map[string]*targetFile, hardware []string) []*targetFile {
	type release struct {
		tf      *targetFile
		version string
	}
	customs := map[string]verify.Custom{}
	newest := map[[2]string]release{} // component, hardware
	for p, tf := range targets {
		if tf.Custom == nil {
			continue
		}
		c, err := verify.ParseCustom(*tf.Custom)
		if err != nil {
			continue
		}
		customs[p] = c
		if c.Kind != "" && c.Kind != verify.KindImage {
			continue
		}
		for _, hw := range hardware {
			if !slices.Contains(c.Hardware, hw) && !slices.Contains(c.Hardware, "*") {
				continue
			}
			k := [2]string{c.Component, hw}
			if cur, ok := newest[k]; !ok || verify.CompareVersions(c.Version, cur.version) > 0 ||
				(verify.CompareVersions(c.Version, cur.version) == 0 && p < cur.tf.Path) {
				newest[k] = release{tf, c.Version}
			}
		}
	}
	images := map[string]bool{}
	for _, r := range newest {
		images[r.tf.Path] = true
	}
	var out []*targetFile
	for p, tf := range targets {
		c, ok := customs[p]
		if !ok {
			continue
		}
		switch {
		case images[p]:
			out = append(out, tf)
		case (c.Kind == verify.KindPatch || c.Kind == verify.KindChunkIndex) && images[c.Of] && matchesAny(c.Hardware, hardware):
			out = append(out, tf)
		}
	}
	slices.SortFunc(out, func(a, b *targetFile) int {
		if a.Length != b.Length {
			return int(min(max(a.Length-b.Length, -1), 1))
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

func matchesAny(listed, hardware []string) bool {
	if slices.Contains(listed, "*") {
		return true
	}
	for _, hw := range hardware {
		if slices.Contains(listed, hw) {
			return true
		}
	}
	return false
}
