package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrDigestMismatch is wrapped when bytes from the registry do not match
// the digest (or size) that named them. The network is at fault, not the
// release: nothing is activated, and a later attempt fetches again.
var ErrDigestMismatch = errors.New("oci: digest mismatch")

// Registry reads one repository of a registry by digest, through
// go-containerregistry's transport (token and basic auth, the v2 ping).
type Registry struct {
	base  string // scheme://host/v2/repo
	rt    http.RoundTripper
	stall time.Duration
}

// RegistryConfig names a registry repository.
type RegistryConfig struct {
	// Host is the registry's host[:port] ("registry.example.com",
	// "127.0.0.1:15000").
	Host string
	// Repository is the image name in the registry ("apps/gateway").
	Repository string
	// Insecure allows plain HTTP (go-containerregistry always allows it
	// for localhost and 127.0.0.1).
	Insecure bool
	// Auth authenticates to the registry; nil is anonymous.
	Auth authn.Authenticator
	// Transport carries the requests; nil is a clone of
	// http.DefaultTransport (which is never modified).
	Transport http.RoundTripper
	// StallTimeout drops a blob transfer that received no byte for this
	// long (default 30s); the fetch then resumes where it stopped.
	StallTimeout time.Duration
}

// NewRegistry pings the registry and negotiates auth for pulling from cfg.Repository.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	var opts []name.Option
	if cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(cfg.Host+"/"+cfg.Repository, opts...)
	if err != nil {
		return nil, fmt.Errorf("oci: registry repository: %w", err)
	}
	auth, base := cfg.Auth, cfg.Transport
	if auth == nil {
		auth = authn.Anonymous
	}
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("oci: registry %s: %w", cfg.Host, err)
	}
	reg := repo.Registry
	stall := cfg.StallTimeout
	if stall <= 0 {
		stall = 30 * time.Second
	}
	return &Registry{base: fmt.Sprintf("%s://%s/v2/%s", reg.Scheme(), reg.RegistryStr(), repo.RepositoryStr()), rt: rt, stall: stall}, nil
}

func (r *Registry) get(ctx context.Context, url string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := r.rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("oci: GET %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusPartialContent {
		res.Body.Close()
		return nil, fmt.Errorf("oci: GET %s: %s", url, res.Status)
	}
	return res, nil
}

// Manifest fetches the manifest or index named by digest (or by tag, for
// publishing: then the bytes are not checked against anything) and returns
// its bytes exactly as served, after checking them against the digest.
func (r *Registry) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	hdr := http.Header{"Accept": {strings.Join([]string{MediaTypeIndex, MediaTypeManifest, MediaTypeDockerList, MediaTypeDockerManifest}, ", ")}}
	res, err := r.get(ctx, r.base+"/manifests/"+ref, hdr)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("oci: manifest %s: %w", ref, err)
	}
	if len(b) > maxManifestSize {
		return nil, "", fmt.Errorf("%w: manifest %s larger than %d bytes", ErrBadManifest, ref, maxManifestSize)
	}
	sum := sha256.Sum256(b)
	got := "sha256:" + hex.EncodeToString(sum[:])
	if strings.HasPrefix(ref, "sha256:") && got != ref {
		return nil, "", fmt.Errorf("%w: manifest %s: the registry served %s", ErrDigestMismatch, ref, got)
	}
	return b, got, nil
}

// fetchBlob appends the blob d to the partial file f (which holds a
// prefix of it already, hashed into h), asking the registry for the rest
// with a Range request. A registry that ignores Range starts over from
// byte 0. It returns how many bytes crossed the network.
func (r *Registry) fetchBlob(ctx context.Context, d Descriptor, f *os.File, h hashWriter, have int64) (int64, error) {
	hdr := http.Header{}
	if have > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(r.stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	res, err := r.get(ctx, r.base+"/blobs/"+d.Digest, hdr)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	body := &stallReader{r: res.Body, reset: func() { watchdog.Reset(r.stall) }}
	if have > 0 && res.StatusCode != http.StatusPartialContent {
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		h.Reset()
		have = 0
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return 0, err
	}
	// One byte more than the rest, to catch a blob longer than its size.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, d.Size-have+1))
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return n, fmt.Errorf("oci: blob %s: %w", d.Digest, err)
	}
	return n, nil
}

// errStalled is the cause of a transfer dropped by the stall watchdog.
var errStalled = errors.New("oci: transfer stalled")

// stallReader resets the stall watchdog on every read that brings bytes.
type stallReader struct {
	r     io.Reader
	reset func()
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.reset()
	}
	return n, err
}
