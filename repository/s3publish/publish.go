package s3publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/switchback-ota/switchback/repository"
)

// Errors callers branch on.
var (
	// ErrRemoteNewer means the bucket's timestamp.json is newer than the
	// repository's, or as new with other bytes: another repository (or
	// another copy of this one) published there. Nothing was uploaded.
	ErrRemoteNewer = errors.New("s3publish: the bucket holds a newer release than the repository")
	// ErrIncomplete means the repository's metadata names a file it does
	// not hold: publishing it would show devices a half release. Nothing
	// was uploaded.
	ErrIncomplete = errors.New("s3publish: the repository is incomplete")
	// ErrPruneRefused means the bucket holds snapshot or targets metadata
	// that is not in the repository yet is current or unexpired: a device
	// may still ask for it. The publish itself succeeded; nothing was
	// deleted.
	ErrPruneRefused = errors.New("s3publish: prune refused")
)

// Defaults of Config.
const (
	DefaultConcurrency = 4
	DefaultPartSize    = 64 << 20
	minPartSize        = 5 << 20 // S3's smallest part but the last
)

// sha256Meta is the user metadata (x-amz-meta-switchback-sha256) every
// upload carries, compared when an ETag does not tell.
const sha256Meta = "Switchback-Sha256"

// Config says where to publish and how.
type Config struct {
	// Endpoint is the store's URL, e.g. "https://s3.eu-west-1.amazonaws.com"
	// or "http://127.0.0.1:8333"; plain http only to a loopback address.
	// Required.
	Endpoint string
	// Bucket is the bucket name. Required; it must exist.
	Bucket string
	// Prefix is the key prefix the repository goes under ("" for the
	// bucket's root): metadata/ and targets/ become <Prefix>/metadata/ and
	// <Prefix>/targets/. Leading and trailing slashes are ignored.
	Prefix string
	// Region is the bucket's region; "" lets the client find it.
	Region string
	// AccessKey, SecretKey and SessionToken are the credentials; all
	// empty means anonymous requests.
	AccessKey, SecretKey, SessionToken string
	// Transport carries the requests; nil means minio-go's default (TLS
	// with the system's roots, which SSL_CERT_FILE can replace).
	Transport http.RoundTripper
	// Concurrency is the number of uploads or deletions at once within
	// one phase; 0 means DefaultConcurrency.
	Concurrency int
	// PartSize is the size of each part of a multipart upload, used for
	// files larger than it; 0 means DefaultPartSize. At least 5 MiB. A
	// multipart upload buffers one part at a time (to send its
	// Content-MD5), so a publish holds up to Concurrency × PartSize bytes.
	PartSize int64
	// Now is the clock that decides which metadata has expired; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives a line per uploaded or deleted object; nil discards.
	Logger *slog.Logger
}

// Options are the knobs of one publish.
type Options struct {
	// Prune deletes, after the new timestamp is up, the objects the
	// repository no longer holds and no retained metadata names.
	Prune bool
}

// Result says what a publish did.
type Result struct {
	// Uploaded lists the uploaded files (relative to the repository
	// directory) in phase order, sorted within a phase.
	Uploaded []string
	// Skipped counts the files already in the bucket with the same bytes.
	Skipped int
	// Deleted lists the objects pruned, relative to the prefix.
	Deleted []string
}

// Publisher uploads repositories to one bucket and prefix. Safe for
// concurrent use (but see the package documentation).
type Publisher struct {
	client      *minio.Client
	bucket      string
	prefix      string // "" or ends in "/"
	concurrency int
	partSize    int64
	now         func() time.Time
	log         *slog.Logger
}

// New returns a Publisher for cfg. It makes no request.
func New(cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint) // checked by validate
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:    u.Scheme == "https",
		Region:    cfg.Region,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3publish: %w", err)
	}
	p := &Publisher{
		client: client, bucket: cfg.Bucket, concurrency: cfg.Concurrency,
		partSize: cfg.PartSize, now: cfg.Now, log: cfg.Logger,
	}
	if pre := strings.Trim(cfg.Prefix, "/"); pre != "" {
		p.prefix = pre + "/"
	}
	if p.concurrency == 0 {
		p.concurrency = DefaultConcurrency
	}
	if p.partSize == 0 {
		p.partSize = DefaultPartSize
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

func (cfg Config) validate() error {
	u, err := url.Parse(cfg.Endpoint)
	switch {
	case cfg.Endpoint == "":
		return errors.New("s3publish: Config.Endpoint is empty")
	case err != nil:
		return fmt.Errorf("s3publish: Config.Endpoint: %w", err)
	case u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
		return fmt.Errorf("s3publish: Config.Endpoint %q: want scheme://host[:port]", cfg.Endpoint)
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return fmt.Errorf("s3publish: Config.Endpoint %q: plain http only to a loopback address; use https", cfg.Endpoint)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("s3publish: Config.Endpoint %q: want http or https", cfg.Endpoint)
	case cfg.Bucket == "":
		return errors.New("s3publish: Config.Bucket is empty")
	case cfg.Concurrency < 0:
		return errors.New("s3publish: Config.Concurrency is negative")
	case cfg.PartSize != 0 && cfg.PartSize < minPartSize:
		return fmt.Errorf("s3publish: Config.PartSize %d is below S3's 5 MiB minimum", cfg.PartSize)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseURL splits "s3://bucket/prefix" into its bucket and prefix (which
// may be empty).
func ParseURL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("s3publish: %q: want s3://bucket/prefix", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" || strings.ContainsAny(bucket, "?#") {
		return "", "", fmt.Errorf("s3publish: %q: want s3://bucket/prefix", s)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

// Publish uploads the repository r in phase order (see the package
// documentation), skipping what the bucket already holds, and prunes the
// bucket if opts ask. It returns what it did, also on error.
func (p *Publisher) Publish(ctx context.Context, r *repository.Repo, opts Options) (Result, error) {
	var res Result
	files, err := scanRepo(r.Dir())
	if err != nil {
		return res, err
	}
	if err := checkComplete(ctx, r, files); err != nil {
		return res, err
	}
	remote, err := p.list(ctx)
	if err != nil {
		return res, err
	}
	if err := p.checkNotNewer(ctx, files, remote); err != nil {
		return res, err
	}
	for ph := range numPhases {
		if err := p.uploadPhase(ctx, ph, files, remote, &res); err != nil {
			return res, err
		}
	}
	if !opts.Prune {
		return res, nil
	}
	return res, p.prune(ctx, files, &res)
}

// key returns the object key of the repository file rel.
func (p *Publisher) key(rel string) string { return p.prefix + rel }

// localFile is one file of the repository to upload.
type localFile struct {
	rel   string // relative to the repository directory, slash-separated
	phase Phase
	path  string // on disk
	data  []byte // the bytes, read up front, of a file that changes in place
}

func (f localFile) open() (io.ReadCloser, error) {
	if f.data != nil {
		return io.NopCloser(bytes.NewReader(f.data)), nil
	}
	return os.Open(f.path)
}

// scanRepo lists the served files of the repository in dir. The files
// that change in place are read first, so that everything the captured
// timestamp names was written before the listing (the repository writes
// timestamp.json last).
func scanRepo(dir string) (map[string]localFile, error) {
	files := map[string]localFile{}
	for _, name := range []string{"timestamp.json", "root.json", "snapshot.json"} {
		rel := path.Join(repository.MetadataPath, name)
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("s3publish: %w", err)
		}
		ph, _ := PhaseOf(rel)
		files[rel] = localFile{rel: rel, phase: ph, data: b}
	}
	for _, top := range []string{repository.MetadataPath, repository.TargetsPath} {
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return err // temporary files are ".tmp-…"
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if repository.Mutable(rel) {
				return nil // read above, or written after: the next publish's
			}
			ph, err := PhaseOf(rel)
			if err != nil {
				return err
			}
			files[rel] = localFile{rel: rel, phase: ph, path: p}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("s3publish: %w", err)
		}
	}
	return files, nil
}

// list returns the bucket's objects under the prefix's metadata/ and
// targets/, by repository-relative path.
func (p *Publisher) list(ctx context.Context) (map[string]remoteObject, error) {
	out := map[string]remoteObject{}
	for _, top := range []string{repository.MetadataPath, repository.TargetsPath} {
		opts := minio.ListObjectsOptions{Prefix: p.key(top) + "/", Recursive: true}
		for obj := range p.client.ListObjects(ctx, p.bucket, opts) {
			if obj.Err != nil {
				return nil, fmt.Errorf("s3publish: list %s: %w", opts.Prefix, obj.Err)
			}
			out[strings.TrimPrefix(obj.Key, p.prefix)] = remoteObject{size: obj.Size, etag: obj.ETag}
		}
	}
	return out, nil
}
