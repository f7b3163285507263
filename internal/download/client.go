package download

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"
)

// Defaults for the zero values of [Config].
const (
	DefaultRetryMax     = 5
	DefaultRetryWaitMin = 500 * time.Millisecond
	DefaultRetryWaitMax = 30 * time.Second
	DefaultStallTimeout = 30 * time.Second
	// A link slower than 1 KiB/s over 30 s is given up on (and resumed):
	// slower than any link an update can sensibly use, and a server that
	// drips bytes to hold devices is cut off within a minute.
	DefaultLowSpeedLimit = 1024
	DefaultLowSpeedTime  = 30 * time.Second
	// A metadata file (timestamp.json is a few hundred bytes, a large
	// targets.json a few MB) from one mirror, retries included.
	DefaultMetadataTimeout = 5 * time.Minute
	DefaultMaxRetryAfter   = 10 * time.Minute
	DefaultUserAgent       = "switchback"

	// copyBufferSize is the one buffer a transfer uses: memory does not
	// grow with the size of a target.
	copyBufferSize = 256 << 10
	// maxRestarts bounds how often one Fetch starts over because the
	// content behind a URL changed: a server whose validator changes on
	// every request would otherwise loop forever.
	maxRestarts = 3
)

// TLSConfig configures the private TLS transport [New] builds when
// [Config].HTTPClient is nil.
type TLSConfig struct {
	// CAFile is a PEM bundle of the certificate authorities trusted for
	// the update servers. It replaces the system roots; empty means the
	// system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key for
	// mutual TLS; both or neither. They are read by New (so a bad pair is
	// an error at once) and read again at a handshake when either file's
	// modification time or size changed, so a renewed certificate is used
	// without a restart. A renewed pair that fails to load is logged and
	// the previous one kept.
	CertFile, KeyFile string
	// MinVersion is the lowest TLS version accepted (tls.VersionTLS12 or
	// tls.VersionTLS13); zero means TLS 1.2. Lower versions are refused.
	MinVersion uint16
}

// Config configures a [Client]. The zero value is usable: system roots,
// proxies from the environment, no logging, [DefaultRetryMax] retries.
type Config struct {
	// HTTPClient, when set, is used as is (its Transport carries TLS and
	// proxy settings, so TLS and Proxy must then be empty). When nil, New
	// builds a private client from TLS and Proxy; http.DefaultClient and
	// http.DefaultTransport are never used or modified.
	HTTPClient *http.Client
	// TLS configures the private transport.
	TLS TLSConfig
	// Proxy selects a proxy per request; nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY, NO_PROXY...).
	Proxy func(*http.Request) (*url.URL, error)
	// Logger receives structured logs, including retryablehttp's; nil
	// discards them.
	Logger *slog.Logger
	// RetryMax is how many times a failing request is retried (connection
	// errors, 429, 5xx other than 501, stalls, bodies cut short) before
	// the next mirror is tried; a retry that made progress resets the
	// count. Zero means DefaultRetryMax; negative means no retries.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between
	// retries (with jitter: each wait is uniformly between half and all of
	// min·2^attempt, capped at max). Zero means the defaults.
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxRetryAfter caps how long a Retry-After header (on 429 and 503)
	// may make a transfer wait; zero means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// StallTimeout: when no byte arrives for this long (while waiting for
	// a response or reading a body), the connection is dropped and the
	// transfer resumes with a Range request. Zero means
	// DefaultStallTimeout; waits in Pause and in the rate limiter do not
	// count.
	StallTimeout time.Duration
	// LowSpeedLimit and LowSpeedTime, like curl's --speed-limit and
	// --speed-time: when fewer than LowSpeedLimit bytes per second arrive
	// on average over LowSpeedTime spent waiting on the network, the
	// connection is dropped with ErrTooSlow and the transfer resumed like
	// after a stall; such an attempt counts against RetryMax even though
	// it delivered bytes, so that a server dripping bytes ends in an error
	// rather than holding a transfer forever. Zero means
	// DefaultLowSpeedLimit and DefaultLowSpeedTime; a negative
	// LowSpeedLimit turns the check off. Waits in Pause and in the rate
	// limiter do not count.
	LowSpeedLimit int64
	LowSpeedTime  time.Duration
	// MetadataTimeout bounds the fetch of one metadata file, or another
	// small file fetched whole (Get, GetConditional, Fetcher), from one
	// mirror, retries included: past it the fetch fails with ErrDeadline
	// and the next mirror is tried. Zero means DefaultMetadataTimeout;
	// negative means no deadline but the caller's context.
	MetadataTimeout time.Duration
	// RateLimit caps the transfer rate of all transfers of the Client
	// together, in bytes per second; 0 means unlimited.
	RateLimit int64
	// Pause, when set, is called before every request and between chunks
	// of a body. It may block (while the link is metered, say) and must
	// return ctx.Err() if ctx ends while it waits; any error it returns
	// aborts the transfer (and is returned, wrapped). Transfers that run
	// at once (a container registry's requests among them) call it
	// concurrently: it must be safe for that.
	Pause func(ctx context.Context) error
	// UserAgent is sent with every request; empty means DefaultUserAgent.
	UserAgent string
}

func (cfg *Config) validate() error {
	if cfg.HTTPClient != nil && (cfg.TLS != TLSConfig{} || cfg.Proxy != nil) {
		return errors.New("download: Config.HTTPClient is set: TLS and Proxy belong to its Transport, leave them empty")
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		return errors.New("download: TLS.CertFile and TLS.KeyFile go together: set both or neither")
	}
	switch cfg.TLS.MinVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("download: TLS.MinVersion %#x refused: TLS 1.2 (%#x) is the minimum", cfg.TLS.MinVersion, tls.VersionTLS12)
	}
	if cfg.RetryWaitMin < 0 || cfg.RetryWaitMax < 0 || cfg.StallTimeout < 0 || cfg.MaxRetryAfter < 0 || cfg.LowSpeedTime < 0 {
		return errors.New("download: negative durations in Config")
	}
	if cfg.RetryWaitMin > 0 && cfg.RetryWaitMax > 0 && cfg.RetryWaitMin > cfg.RetryWaitMax {
		return fmt.Errorf("download: RetryWaitMin %v is above RetryWaitMax %v", cfg.RetryWaitMin, cfg.RetryWaitMax)
	}
	if cfg.RateLimit < 0 {
		return fmt.Errorf("download: RateLimit %d is negative", cfg.RateLimit)
	}
	return nil
}

// setDefaults replaces zero values by the defaults.
func (cfg *Config) setDefaults() {
	if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultRetryMax
	} else if cfg.RetryMax < 0 {
		cfg.RetryMax = 0
	}
	if cfg.RetryWaitMin == 0 {
		// The default, or RetryWaitMax when that is set below it.
		cfg.RetryWaitMin = DefaultRetryWaitMin
		if cfg.RetryWaitMax > 0 {
			cfg.RetryWaitMin = min(DefaultRetryWaitMin, cfg.RetryWaitMax)
		}
	}
	if cfg.RetryWaitMax == 0 {
		cfg.RetryWaitMax = max(DefaultRetryWaitMax, cfg.RetryWaitMin)
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.LowSpeedLimit == 0 {
		cfg.LowSpeedLimit = DefaultLowSpeedLimit
	}
	if cfg.LowSpeedTime == 0 {
		cfg.LowSpeedTime = DefaultLowSpeedTime
	}
	if cfg.MetadataTimeout == 0 {
		cfg.MetadataTimeout = DefaultMetadataTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
}

// Client transfers files over HTTP(S). It is safe for concurrent use.
type Client struct {
	cfg     Config
	log     *slog.Logger
	hc      *http.Client
	rc      *retryablehttp.Client
	limiter *rate.Limiter // nil: unlimited
	// wait takes n tokens from the rate limiter; a field so that tests
	// can count tokens without timing anything.
	wait func(ctx context.Context, n int) error

	ignoresRange sync.Map // host → struct{}: "server ignores Range" logged
	// marksOwn: a RoundTripper was made, and the Client's requests carry
	// ownHeader for it.
	marksOwn atomic.Bool
}

// New returns a Client for cfg, or an error if cfg is inconsistent or the
// TLS files cannot be loaded.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Client{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.hc = cfg.HTTPClient
	if c.hc == nil {
		tr, err := newTransport(cfg, c.log)
		if err != nil {
			return nil, err
		}
		c.hc = &http.Client{Transport: tr}
	}
	c.rc = &retryablehttp.Client{
		HTTPClient:     c.hc,
		RetryWaitMin:   cfg.RetryWaitMin,
		RetryWaitMax:   cfg.RetryWaitMax,
		RetryMax:       cfg.RetryMax,
		CheckRetry:     c.checkRetry,
		Backoff:        c.backoff,
		RequestLogHook: c.requestHook,
		// The last response is handed back unread: its status decides
		// between "next mirror" and "give up", and its body is closed by
		// the caller.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	if cfg.Logger != nil {
		c.rc.Logger = leveled{cfg.Logger}
	}
	c.wait = func(context.Context, int) error { return nil }
	if cfg.RateLimit > 0 {
		// One second of transfer may come in a burst, and a read never
		// asks for more than the burst (see chunkSize).
		burst := int(min(cfg.RateLimit, copyBufferSize))
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), burst)
		c.wait = c.limiter.WaitN
	}
	return c, nil
}

// chunkSize is the most one read asks for: the copy buffer, or less when a
// rate limit's burst is smaller.
func (c *Client) chunkSize() int {
	if c.limiter != nil {
		return min(copyBufferSize, c.limiter.Burst())
	}
	return copyBufferSize
}

func newTransport(cfg Config, log *slog.Logger) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS.MinVersion != 0 {
		tc.MinVersion = cfg.TLS.MinVersion
	}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("download: reading CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("download: CA bundle %s holds no PEM certificate", cfg.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.TLS.CertFile != "" {
		kp := &keyPair{certFile: cfg.TLS.CertFile, keyFile: cfg.TLS.KeyFile, log: log}
		if err := kp.load(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = kp.get
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	return &http.Transport{
		Proxy: proxy,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Lengths and Range offsets are of the bytes on the wire: never
		// let the transport ask for, and transparently undo, gzip.
		DisableCompression: true,
	}, nil
}

// keyPair is a client certificate reloaded when its files change.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp string // modification times and sizes of both files when loaded
}

func fileStamp(paths ...string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

func (k *keyPair) load() error {
	stamp, err := fileStamp(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("download: client certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("download: client certificate: %w", err)
	}
	k.mu.Lock()
	k.cert, k.stamp = &cert, stamp
	k.mu.Unlock()
	return nil
}

// get is tls.Config.GetClientCertificate: it reloads the pair when either
// file changed since it was last loaded.
func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	stamp := k.stamp
	k.mu.Unlock()
	if now, err := fileStamp(k.certFile, k.keyFile); err == nil && now != stamp {
		if err := k.load(); err != nil {
			k.log.Warn("client certificate changed but does not load; keeping the previous one", "err", err)
			k.mu.Lock()
			k.stamp = now // do not retry a broken pair at every handshake
			k.mu.Unlock()
		} else {
			k.log.Info("client certificate reloaded", "cert", k.certFile)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cert, nil
}

// leveled adapts *slog.Logger to retryablehttp.LeveledLogger.
// retryablehttp logs every failed attempt at error level; a retried
// failure is not an error of the transfer, so it becomes a warning.
type leveled struct{ l *slog.Logger }

func (l leveled) Error(msg string, kv ...any) { l.l.Warn(msg, kv...) }
func (l leveled) Info(msg string, kv ...any)  { l.l.Info(msg, kv...) }
func (l leveled) Debug(msg string, kv ...any) { l.l.Debug(msg, kv...) }
func (l leveled) Warn(msg string, kv ...any)  { l.l.Warn(msg, kv...) }

// attemptKey carries the per-transfer state into retryablehttp's hooks,
// which are per Client.
type attemptKey struct{}

type attemptState struct {
	requests int
	watch    *watch
}

func stateOf(ctx context.Context) *attemptState {
	s, _ := ctx.Value(attemptKey{}).(*attemptState)
	return s
}

// requestHook runs before every attempt retryablehttp makes: mark it as
// the Client's own once a RoundTripper may be under it, count it and
// start watching for a stall or a slow link while waiting for the
// response.
func (c *Client) requestHook(_ retryablehttp.Logger, req *http.Request, _ int) {
	if c.marksOwn.Load() {
		req.Header.Set(ownHeader, "1")
	}
	if s := stateOf(req.Context()); s != nil {
		s.requests++
		s.watch.arm()
	}
}

// checkRetry runs after every attempt: the watch stops for the backoff (a
// Retry-After longer than the stall timeout is no stall).
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if s := stateOf(ctx); s != nil {
		s.watch.disarm(0)
	}
	if permanentTLS(err) {
		return false, err
	}
	retry, rerr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	if retry {
		// A retry is a request too: Pause comes before it.
		if perr := c.pause(ctx); perr != nil {
			return false, perr
		}
	}
	return retry, rerr
}

// backoff is exponential with jitter; Retry-After on 429 and 503 is
// honoured up to MaxRetryAfter.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, c.cfg.MaxRetryAfter)
		}
	}
	return jitterBackoff(lo, hi, attempt, rand.Int64N)
}

// jitterBackoff returns a wait uniformly drawn from [d/2, d] where
// d = lo·2^attempt capped at hi. randN(n) returns a value in [0, n).
func jitterBackoff(lo, hi time.Duration, attempt int, randN func(int64) int64) time.Duration {
	d := hi
	if attempt < 62 {
		if m := lo << attempt; m > 0 && m>>attempt == lo && m < hi {
			d = m
		}
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + time.Duration(randN(int64(d-half)+1))
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// A date in the past means "now".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
