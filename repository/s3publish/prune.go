package s3publish

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/switchback-ota/switchback/repository"
)

// prune deletes the bucket's objects the repository no longer holds,
// except what must stay (see the package documentation). It runs after
// timestamp.json is up, so no device is sent to a deleted file by the new
// release, and the previous releases' files it deletes are those the
// repository's own prune judged no device can still ask for. Whatever
// metadata the repository still holds names only files it holds
// (checkComplete), so what stays in the bucket is whole.
func (p *Publisher) prune(ctx context.Context, files map[string]localFile, res *Result) error {
	remote, err := p.list(ctx)
	if err != nil {
		return err
	}
	current := currentVersions(files)
	byPhase := make([][]string, numPhases)
	var refused []string
	for rel := range remote {
		if _, ok := files[rel]; ok || repository.Mutable(rel) {
			continue
		}
		ph, err := PhaseOf(rel)
		if err != nil || ph == PhaseRootMetadata {
			continue // not ours to judge, or a root: devices walk every one
		}
		if ph != PhaseContent {
			ok, err := p.stale(ctx, rel, current)
			if err != nil {
				return err
			}
			if !ok {
				refused = append(refused, rel)
			}
		}
		byPhase[ph] = append(byPhase[ph], rel)
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return fmt.Errorf("%w: the bucket holds metadata the repository does not that is current or unexpired: %s",
			ErrPruneRefused, strings.Join(refused, ", "))
	}
	// Snapshots before the targets metadata they name, metadata before
	// the files it names: a prune cut short leaves no dangling name.
	for ph := numPhases - 1; ph >= 0; ph-- {
		slices.Sort(byPhase[ph])
		if err := p.remove(ctx, byPhase[ph], res); err != nil {
			return err
		}
	}
	return nil
}

// currentVersions returns the highest version of each role among the
// repository's versioned metadata files.
func currentVersions(files map[string]localFile) map[string]int64 {
	cur := map[string]int64{}
	for rel := range files {
		dir, name := path.Split(rel)
		if v, role, ok := repository.VersionedMetadata(name); ok && dir == repository.MetadataPath+"/" {
			cur[role] = max(cur[role], v)
		}
	}
	return cur
}

// stale reports whether the bucket's metadata object rel may go: it has
// expired and is older than the repository's current version of its role
// (if the repository still has the role).
func (p *Publisher) stale(ctx context.Context, rel string, current map[string]int64) (bool, error) {
	v, role, _ := repository.VersionedMetadata(path.Base(rel))
	if cur, ok := current[role]; ok && v >= cur {
		return false, nil // a role the repository dropped goes by expiry alone
	}
	_, s, err := p.getMetadata(ctx, rel)
	if err != nil {
		return false, err
	}
	return s.Signed.Version == v && !s.Signed.Expires.After(p.now()), nil
}

// remove deletes the objects of rels, p.concurrency at a time.
func (p *Publisher) remove(ctx context.Context, rels []string, res *Result) error {
	var mu sync.Mutex
	return p.each(ctx, len(rels), func(ctx context.Context, i int) error {
		if err := p.client.RemoveObject(ctx, p.bucket, p.key(rels[i]), minio.RemoveObjectOptions{}); err != nil {
			return fmt.Errorf("s3publish: delete %s: %w", rels[i], err)
		}
		p.log.Info("deleted", "file", rels[i])
		mu.Lock()
		res.Deleted = append(res.Deleted, rels[i])
		mu.Unlock()
		return nil
	})
}
