package repository

import (
	"path"
	"strconv"
	"strings"
)

// Cache-Control values for the files of a served repository: the ones the
// README's "Serving it" section prescribes (its nginx configuration and
// its object store commands use these strings; TestReadmeCacheHeaders
// keeps them equal), and the ones publishers such as
// repository/s3publish set on each object.
const (
	// CacheImmutable is for every file whose name carries its version or
	// content hash: N.<role>.json and everything under targets/.
	CacheImmutable = "public, max-age=31536000, immutable"
	// CacheRevalidate is for the files that change in place:
	// timestamp.json, root.json (and an unversioned snapshot.json). A
	// cache must revalidate them on every request; devices' conditional
	// GETs then cost a 304.
	CacheRevalidate = "no-cache"
)

// CacheControl returns the Cache-Control header a server should send with
// the repository file rel (slash-separated, relative to the repository
// directory, e.g. "metadata/timestamp.json").
func CacheControl(rel string) string {
	if Mutable(rel) {
		return CacheRevalidate
	}
	return CacheImmutable
}

// Mutable reports whether the repository file rel (slash-separated,
// relative to the repository directory) is rewritten in place:
// metadata/timestamp.json, metadata/root.json, metadata/snapshot.json.
// Every other served file is named by its version or content hash and
// never changes once written.
func Mutable(rel string) bool {
	dir, name := path.Split(rel)
	if dir != MetadataPath+"/" {
		return false
	}
	switch name {
	case "timestamp.json", "root.json", "snapshot.json":
		return true
	}
	return false
}

// VersionedMetadata splits the metadata file name "N.<role>.json" into its
// version and role; ok is false for any other name (timestamp.json,
// root.json, temporary files).
func VersionedMetadata(name string) (version int64, role string, ok bool) {
	n, rest, found := strings.Cut(name, ".")
	role, json := strings.CutSuffix(rest, ".json")
	if !found || !json || !roleNameRE.MatchString(role) {
		return 0, "", false
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 1 || strconv.FormatInt(v, 10) != n {
		return 0, "", false
	}
	return v, role, true
}
