package repository

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/verify"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Prune deletes what no device can still ask for: target files named by no
// targets metadata that is current or not yet expired, and snapshot and
// targets metadata older than the published version and expired. Root
// metadata is never deleted (devices walk every version), nor are
// temporary files of an AddTarget in progress. It returns the removed
// paths, relative to the repository directory.
func (r *Repo) Prune(ctx context.Context) ([]string, error) {
	unlock, err := lockDir(r.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkUnchanged(); err != nil {
		return nil, err
	}
	now := r.now()
	keep := map[string]bool{}
	var removed []string
	remove := func(rel string) error {
		if err := os.Remove(filepath.Join(r.dir, filepath.FromSlash(rel))); err != nil {
			return fmt.Errorf("repository: prune: %w", err)
		}
		removed = append(removed, rel)
		return nil
	}
	entries, err := os.ReadDir(r.MetadataDir())
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	for _, role := range append([]string{RoleTargets, RoleSnapshot}, r.delegatedNames()...) {
		if r.pub[role] == nil {
			continue // a delegated role not published yet
		}
		cur := versionOf(r.pub[role])
		for _, e := range entries {
			n, ok := strings.CutSuffix(e.Name(), "."+role+".json")
			v, err := strconv.ParseInt(n, 10, 64)
			if !ok || err != nil {
				continue
			}
			live, err := r.liveMetadata(role, e.Name(), v >= cur, now, keep)
			if err != nil {
				return nil, err
			}
			if !live {
				if err := remove(path.Join(MetadataPath, e.Name())); err != nil {
					return removed, err
				}
			}
		}
	}
	err = r.pruneTargets(ctx, keep, remove)
	sort.Strings(removed)
	if err != nil {
		return removed, fmt.Errorf("repository: prune: %w", err)
	}
	return removed, nil
}

// liveMetadata reads the metadata file name of role and reports whether a
// device may still ask for it: it is current (or newer) or not expired.
// The target files of live targets metadata are added to keep.
func (r *Repo) liveMetadata(role, name string, current bool, now time.Time, keep map[string]bool) (bool, error) {
	b, err := os.ReadFile(filepath.Join(r.MetadataDir(), name))
	if err != nil {
		return false, fmt.Errorf("repository: %w", err)
	}
	m, err := parse(role, b)
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	_, exp, _, _ := common(m)
	live := current || exp.After(now)
	if role != RoleSnapshot && live {
		for p, tf := range m.(*metadata.Metadata[metadata.TargetsType]).Signed.Targets {
			dir, base := path.Split(p)
			for _, h := range tf.Hashes {
				keep[path.Join(dir, fmt.Sprintf("%x.%s", []byte(h), base))] = true
			}
		}
	}
	return live, nil
}

// pruneTargets removes the files of targets/ that keep does not name,
// leaving the chunk store and temporary files alone.
func (r *Repo) pruneTargets(ctx context.Context, keep map[string]bool, remove func(rel string) error) error {
	return filepath.WalkDir(r.TargetsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(r.TargetsDir(), ChunkStoreDir) {
			return filepath.SkipDir // shared by releases; see AddChunkIndex
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(r.TargetsDir(), p)
		if err != nil {
			return err
		}
		if keep[filepath.ToSlash(rel)] {
			return nil
		}
		return remove(path.Join(TargetsPath, filepath.ToSlash(rel)))
	})
}

// Referenced returns the files, relative to the repository directory and
// slash-separated, that the targets metadata in metadata/ names: every
// version on disk of targets and of the delegated roles, current or not.
// That is each target's file and, for chunk indexes, their chunks and
// packs in the chunk store. A mirror of the repository (package
// repository/s3publish) deletes none of these, whatever else it prunes. A
// chunk index that cannot be read is an error: its chunks are unknown.
func (r *Repo) Referenced(ctx context.Context) (map[string]bool, error) {
	refs := &chunkStoreRefs{
		indexes: map[string]verify.Custom{},
		files:   map[string]bool{},
		liveIdx: map[string]bool{},
		keep:    map[string]bool{},
	}
	entries, err := os.ReadDir(r.MetadataDir())
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	for _, e := range entries {
		_, role, ok := VersionedMetadata(e.Name())
		if !ok || role == RoleRoot || role == RoleSnapshot || role == RoleTimestamp {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.MetadataDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
		m, err := parse(role, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		refs.add(m.(*metadata.Metadata[metadata.TargetsType]).Signed.Targets)
	}
	if err := r.keepIndexedChunks(ctx, refs); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for f := range refs.files {
		out[path.Join(TargetsPath, f)] = true
	}
	for c := range refs.keep {
		out[path.Join(TargetsPath, ChunkStoreDir, c)] = true
	}
	for sum := range refs.liveIdx {
		pack, table := PackPaths(sum)
		out[path.Join(TargetsPath, ChunkStoreDir, pack)] = true
		out[path.Join(TargetsPath, ChunkStoreDir, table)] = true
	}
	return out, nil
}
