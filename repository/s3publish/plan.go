package s3publish

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/switchback-ota/switchback/repository"
)

// Phase is one step of a publish; every upload of a phase completes before
// the first of the next one starts (see the package documentation).
type Phase int

// The phases, in upload order.
const (
	PhaseContent          Phase = iota // targets/…: content-addressed files
	PhaseTargetsMetadata               // metadata/N.targets.json, N.<delegated>.json
	PhaseSnapshotMetadata              // metadata/N.snapshot.json
	PhaseRootMetadata                  // metadata/N.root.json
	PhaseSnapshot                      // metadata/snapshot.json (unversioned), if any
	PhaseTimestamp                     // metadata/timestamp.json
	PhaseRoot                          // metadata/root.json
	numPhases
)

var phaseNames = [numPhases]string{
	"content", "targets-metadata", "snapshot-metadata", "root-metadata",
	"snapshot", "timestamp", "root",
}

// String returns the phase's name, e.g. "timestamp".
func (p Phase) String() string {
	if p < 0 || p >= numPhases {
		return fmt.Sprintf("Phase(%d)", int(p))
	}
	return phaseNames[p]
}

// PhaseOf returns the phase of the repository file rel (slash-separated,
// relative to the repository directory). Files a repository does not
// serve, or does not write, are an error.
func PhaseOf(rel string) (Phase, error) {
	dir, name, ok := strings.Cut(rel, "/")
	if !ok || name == "" || path.Clean(rel) != rel {
		return 0, fmt.Errorf("s3publish: %q is not a repository file", rel)
	}
	switch dir {
	case repository.TargetsPath:
		return PhaseContent, nil
	case repository.MetadataPath:
	default:
		return 0, fmt.Errorf("s3publish: %q is not served (only %s/ and %s/ are)",
			rel, repository.MetadataPath, repository.TargetsPath)
	}
	switch name {
	case "snapshot.json":
		return PhaseSnapshot, nil
	case "timestamp.json":
		return PhaseTimestamp, nil
	case "root.json":
		return PhaseRoot, nil
	}
	_, role, ok := repository.VersionedMetadata(name)
	switch {
	case !ok || role == repository.RoleTimestamp:
		return 0, fmt.Errorf("s3publish: %q is not repository metadata", rel)
	case role == repository.RoleRoot:
		return PhaseRootMetadata, nil
	case role == repository.RoleSnapshot:
		return PhaseSnapshotMetadata, nil
	}
	return PhaseTargetsMetadata, nil
}

// digest is what a resumed publish compares: the size, the ETag an S3
// store gives the object when uploaded with partSize, and the SHA-256.
type digest struct {
	size   int64
	etag   string
	sha256 string
}

// digestOf reads src to its end and returns its digest for uploads in
// parts of partSize bytes: the hex MD5 for a single part (size ≤
// partSize), else the hex MD5 of the concatenated part MD5s and "-N", as
// S3 computes a multipart ETag.
func digestOf(src io.Reader, partSize int64) (digest, error) {
	sum := sha256.New()
	var parts []byte
	var d digest
	for {
		part := md5.New()
		n, err := io.Copy(io.MultiWriter(part, sum), io.LimitReader(src, partSize))
		if err != nil {
			return digest{}, err
		}
		d.size += n
		if n == 0 && len(parts) > 0 {
			break
		}
		parts = part.Sum(parts)
		if n < partSize {
			break
		}
	}
	d.sha256 = hex.EncodeToString(sum.Sum(nil))
	if n := len(parts) / md5.Size; n == 1 {
		d.etag = hex.EncodeToString(parts)
	} else {
		d.etag = fmt.Sprintf("%s-%d", hexSum(md5.New(), parts), n)
	}
	return d, nil
}

func hexSum(h hash.Hash, b []byte) string {
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// remoteObject is what a bucket listing says about an object.
type remoteObject struct {
	size int64
	etag string
}

// decision is what to do with one local file given the bucket's copy.
type decision int

const (
	upload decision = iota // absent or different: upload
	skip                   // same size and ETag: already there
	check                  // same size, ETag inconclusive: compare the stored SHA-256
)

// decide compares a local file's digest with the bucket's object, if any.
func decide(local digest, remote remoteObject, present bool) decision {
	switch {
	case !present || remote.size != local.size:
		return upload
	case strings.EqualFold(strings.Trim(remote.etag, `"`), local.etag):
		return skip
	}
	return check
}
