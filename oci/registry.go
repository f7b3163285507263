package oci

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/download"
)

// ErrDigestMismatch is wrapped when bytes from the registry do not match
// the digest (or size) that named them. The network is at fault, not the
// release: nothing is activated, and a later attempt fetches again.
var ErrDigestMismatch = errors.New("oci: digest mismatch")

// Registry reads one repository of a registry by digest. The registry's
// auth (the v2 ping, token and basic auth) is go-containerregistry's
// transport, and every request goes through switchback's one download
// client under the rules of every transfer the device makes: each
// manifest and blob byte with stall and low-speed limits, Pause, the rate
// limit, retries with backoff and Retry-After, Range resume; the ping and
// each token exchange (the first, and those that refresh a token on a
// 401) with Pause before each attempt, the same retries, the stall and
// low-speed limits and the MetadataTimeout deadline, their small bodies
// bounded (see download.Client.RoundTripper).
type Registry struct {
	base string // scheme://host/v2/repo
	dl   *download.Client
}

// RegistryConfig names a registry repository and the rules of its
// transfers. The rules are those of updater.Config (same names, same
// defaults, the same download client): give both the same values, so that
// the pull of an image obeys the limits the updater's own transfers do.
// The pull runs in Arm, after the updater fetched the manifest, so the two
// never share the link at once; the rate limit is counted per Registry.
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
	// Transport carries the requests (TLS, proxy); nil is a clone of
	// http.DefaultTransport (which is never modified).
	Transport http.RoundTripper
	// StallTimeout drops a transfer that received no byte for this long
	// (default 30s); it then resumes where it stopped.
	StallTimeout time.Duration
	// LowSpeedLimit and LowSpeedTime drop and resume a transfer slower
	// than LowSpeedLimit bytes per second over LowSpeedTime (defaults
	// 1 KiB/s over 30s; a negative LowSpeedLimit turns the check off).
	LowSpeedLimit int64
	LowSpeedTime  time.Duration
	// MetadataTimeout bounds the fetch of one manifest, and one auth
	// request (the ping, a token exchange), retries included (default
	// 5m; negative: no bound but the caller's context).
	MetadataTimeout time.Duration
	// RateLimit caps the registry transfers in bytes per second (0:
	// unlimited).
	RateLimit int64
	// Pause, when set, is called before every request (auth requests
	// included) and between chunks of a body, and may block while the
	// link is metered.
	Pause func(ctx context.Context) error
	// RetryMax is how many times a request that fails without progress is
	// retried (default 5; negative: none).
	RetryMax int
	// UserAgent is sent with every registry request, auth requests
	// included, followed by go-containerregistry's version, as that
	// library sends it (empty: "switchback").
	UserAgent string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// maxAuthBody bounds the body of a ping or token response: a token is a
// few kilobytes.
const maxAuthBody = 1 << 20

// NewRegistry pings the registry and negotiates auth for pulling from
// cfg.Repository, through the download client that then carries the
// pull.
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
	// One client for the auth requests and the pull: the auth transport
	// sits between the client and base, and sends its own requests
	// through the client's RoundTripper. The client's http.Client gets
	// that transport once the handshake made it, before any request of
	// the client's own.
	hc := &http.Client{}
	dl, err := download.New(download.Config{
		HTTPClient: hc,
		Logger:     cfg.Logger, StallTimeout: cfg.StallTimeout, RateLimit: cfg.RateLimit, Pause: cfg.Pause,
		LowSpeedLimit: cfg.LowSpeedLimit, LowSpeedTime: cfg.LowSpeedTime, RetryMax: cfg.RetryMax,
		MetadataTimeout: cfg.MetadataTimeout, UserAgent: cfg.UserAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("oci: registry %s: %w", cfg.Host, err)
	}
	// The auth transport sets the User-Agent of every request it passes
	// on, the client's own among them, unless it is given the layer that
	// does so: this one, which sets the client's.
	ua := cfg.UserAgent
	if ua == "" {
		ua = download.DefaultUserAgent
	}
	under := transport.NewUserAgent(dl.RoundTripper(base, maxAuthBody), ua)
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, under, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("oci: registry %s: %w", cfg.Host, err)
	}
	hc.Transport = acceptManifests{rt}
	reg := repo.Registry
	return &Registry{base: fmt.Sprintf("%s://%s/v2/%s", reg.Scheme(), reg.RegistryStr(), repo.RepositoryStr()), dl: dl}, nil
}

// manifestTypes is the Accept header of every registry request: the
// document kinds a manifest may be (blobs ignore it).
var manifestTypes = strings.Join([]string{MediaTypeIndex, MediaTypeManifest, MediaTypeDockerList, MediaTypeDockerManifest}, ", ")

// acceptManifests adds the Accept header a registry needs to serve OCI
// and Docker manifests as they are, not converted to schema 1.
type acceptManifests struct{ rt http.RoundTripper }

func (a acceptManifests) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change its request
	r.Header.Set("Accept", manifestTypes)
	return a.rt.RoundTrip(r)
}

// Manifest fetches the manifest or index named by digest (or by tag, for
// publishing: then the bytes are not checked against anything) and returns
// its bytes exactly as served, after checking them against the digest.
func (r *Registry) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	b, err := r.dl.Get(ctx, []string{r.base + "/manifests/" + ref}, maxManifestSize)
	if err != nil {
		var le *metadata.ErrDownloadLengthMismatch
		if errors.As(err, &le) {
			return nil, "", fmt.Errorf("%w: manifest %s larger than %d bytes", ErrBadManifest, ref, maxManifestSize)
		}
		return nil, "", fmt.Errorf("oci: manifest %s: %w", ref, err)
	}
	got := digestOf(b)
	if strings.HasPrefix(ref, "sha256:") && got != ref {
		return nil, "", fmt.Errorf("%w: manifest %s: the registry served %s", ErrDigestMismatch, ref, got)
	}
	return b, got, nil
}

// fetchBlob appends the blob d to the partial file f (which holds a
// prefix of it already, hashed into h), asking the registry for the rest
// with a Range request; a registry that ignores Range starts over from
// byte 0. It returns how many bytes crossed the network.
func (r *Registry) fetchBlob(ctx context.Context, d Descriptor, f *os.File, h hash.Hash, have int64) (int64, error) {
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return 0, err
	}
	req := download.Request{URLs: []string{r.base + "/blobs/" + d.Digest}, Offset: have, Length: d.Size}
	res, err := r.dl.Fetch(ctx, req, &blobSink{f: f, h: h}, nil)
	if errors.Is(err, download.ErrLength) {
		err = fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	if err != nil {
		return res.Transferred, fmt.Errorf("oci: blob %s: %w", d.Digest, err)
	}
	return res.Transferred, nil
}

// blobSink appends to a partial blob file and its running hash.
type blobSink struct {
	f *os.File
	h hash.Hash
}

func (s *blobSink) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.h.Write(p[:n])
	return n, err
}

// Restart empties the partial file: the registry sends the blob whole.
func (s *blobSink) Restart() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	s.h.Reset()
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}
