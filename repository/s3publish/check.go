package s3publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/switchback-ota/switchback/repository"
)

// signedFields are the parts of any metadata file a publish reads. The
// metadata is the repository's own, signed by it: nothing here verifies
// signatures, devices do.
type signedFields struct {
	Signed struct {
		Version int64     `json:"version"`
		Expires time.Time `json:"expires"`
		Meta    map[string]struct {
			Version int64 `json:"version"`
		} `json:"meta"`
	} `json:"signed"`
}

func parseSigned(name string, b []byte) (signedFields, error) {
	var s signedFields
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("s3publish: %s: %w", name, err)
	}
	if s.Signed.Version < 1 {
		return s, fmt.Errorf("s3publish: %s: no version", name)
	}
	return s, nil
}

// checkComplete makes sure the release the captured timestamp.json
// publishes is whole in files: its snapshot, the metadata the snapshot
// lists, the root root.json copies, and every file that targets metadata
// still in the repository names (repository.Repo.Referenced).
func checkComplete(ctx context.Context, r *repository.Repo, files map[string]localFile) error {
	ts, ok := files[path.Join(repository.MetadataPath, "timestamp.json")]
	if !ok {
		return fmt.Errorf("%w: no %s/timestamp.json", ErrIncomplete, repository.MetadataPath)
	}
	need, err := metadataNamedBy(ts) // the snapshot
	if err != nil {
		return err
	}
	snap, ok := files[need[0]]
	if len(need) != 1 || !ok {
		return fmt.Errorf("%w: timestamp.json names %s, which is missing", ErrIncomplete, strings.Join(need, ", "))
	}
	more, err := metadataNamedBy(snap) // targets and delegated roles
	if err != nil {
		return err
	}
	need = append(need, more...)
	if root, ok := files[path.Join(repository.MetadataPath, "root.json")]; ok {
		s, err := parseSigned("root.json", root.data)
		if err != nil {
			return err
		}
		need = append(need, versioned(s.Signed.Version, repository.RoleRoot))
	}
	referenced, err := r.Referenced(ctx)
	if err != nil {
		return err
	}
	for rel := range referenced {
		need = append(need, rel)
	}
	var missing []string
	for _, rel := range need {
		if _, ok := files[rel]; !ok {
			missing = append(missing, rel)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: metadata names files it does not hold: %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	return nil
}

// metadataNamedBy returns the versioned metadata files the timestamp or
// snapshot f lists ("snapshot.json" version 3 → metadata/3.snapshot.json).
func metadataNamedBy(f localFile) ([]string, error) {
	b := f.data
	if b == nil {
		var err error
		if b, err = os.ReadFile(f.path); err != nil {
			return nil, fmt.Errorf("s3publish: %w", err)
		}
	}
	s, err := parseSigned(f.rel, b)
	if err != nil {
		return nil, err
	}
	var out []string
	for name, m := range s.Signed.Meta {
		role, ok := strings.CutSuffix(name, ".json")
		if !ok || m.Version < 1 {
			return nil, fmt.Errorf("s3publish: %s: bad meta entry %q", f.rel, name)
		}
		out = append(out, versioned(m.Version, role))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("s3publish: %s lists no metadata", f.rel)
	}
	slices.Sort(out)
	return out, nil
}

func versioned(v int64, role string) string {
	return path.Join(repository.MetadataPath, fmt.Sprintf("%d.%s.json", v, role))
}

// maxMetadataSize bounds what is read of a metadata object in the bucket.
const maxMetadataSize = 16 << 20

// getMetadata reads and parses the metadata object of rel in the bucket.
func (p *Publisher) getMetadata(ctx context.Context, rel string) ([]byte, signedFields, error) {
	obj, err := p.client.GetObject(ctx, p.bucket, p.key(rel), minio.GetObjectOptions{})
	if err != nil {
		return nil, signedFields{}, fmt.Errorf("s3publish: get %s: %w", rel, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxMetadataSize))
	if err != nil {
		return nil, signedFields{}, fmt.Errorf("s3publish: get %s: %w", rel, err)
	}
	s, err := parseSigned(rel, b)
	return b, s, err
}

// checkNotNewer refuses to publish over a bucket whose timestamp.json is
// newer than the repository's, or as new with other bytes.
func (p *Publisher) checkNotNewer(ctx context.Context, files map[string]localFile, remote map[string]remoteObject) error {
	rel := path.Join(repository.MetadataPath, "timestamp.json")
	if _, ok := remote[rel]; !ok {
		return nil // a first publish
	}
	local := files[rel]
	mine, err := parseSigned(rel, local.data)
	if err != nil {
		return err
	}
	b, theirs, err := p.getMetadata(ctx, rel)
	if err != nil {
		return err
	}
	switch v, w := theirs.Signed.Version, mine.Signed.Version; {
	case v > w:
		return fmt.Errorf("%w: timestamp version %d there, %d here", ErrRemoteNewer, v, w)
	case v == w && !bytes.Equal(b, local.data):
		return fmt.Errorf("%w: timestamp version %d there and here, with other contents", ErrRemoteNewer, v)
	}
	return nil
}
