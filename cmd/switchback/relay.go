package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/relay"
)

const relayUsage = `usage: switchback relay [-relay-config FILE] [flags]        serve a verified TUF mirror to edge devices
       switchback relay ca [-dir DIR]                        print the gateway CA certificate (made on first use)
       switchback relay issue-cert [-dir DIR] -name NAME -out PREFIX
                                                             issue a client certificate: PREFIX.pem, PREFIX.key

The relay configuration file (-relay-config, JSON; flags of the same name override it):

  {"dir": "/var/lib/switchback-relay",            // trusted metadata, target cache, gateway CA (tls/ca.pem)
   "root": "/etc/switchback/root.json",           // the trusted root the edge devices embed too
   "metadata_url": "https://updates.example.com/metadata/", "targets_url": "https://updates.example.com/targets/",
   "hardware": ["sensor-hub-v2"],                 // edge devices' hardware ids: their releases are prefetched
   "listen": ":8443", "names": ["gateway.local", "192.168.7.1"],  // the server certificate's names
   "client_certs": false,                         // require client certificates issued by the gateway CA
   "insecure_http": false,                        // plain HTTP: only when asked for
   "cache_bytes": 4294967296, "refresh_interval": "5m", "min_time": "2026-11-01T00:00:00Z",
   "ca_file": "", "cert_file": "", "key_file": ""}  // upstream TLS, as for the device

Edge devices use metadata_url https://<names[0]>:<port>/metadata/ and targets_url .../targets/,
the cloud repository as metadata_mirrors/targets_mirrors, and ca_file = the gateway CA.
`

// relayConfig is the relay's configuration file (-relay-config); flags
// override it. Unknown fields are errors.
type relayConfig struct {
	Dir             string   `json:"dir"`
	Root            string   `json:"root"`
	MetadataURL     string   `json:"metadata_url"`
	TargetsURL      string   `json:"targets_url"`
	Hardware        []string `json:"hardware"`
	Listen          string   `json:"listen"`
	Names           []string `json:"names"`
	ClientCerts     bool     `json:"client_certs"`
	InsecureHTTP    bool     `json:"insecure_http"`
	CacheBytes      int64    `json:"cache_bytes"`
	RefreshInterval duration `json:"refresh_interval"`
	CAFile          string   `json:"ca_file"`
	CertFile        string   `json:"cert_file"`
	KeyFile         string   `json:"key_file"`
	MinTime         string   `json:"min_time"`
}

const defaultRelayDir = "/var/lib/switchback-relay"

// parseRelayConfig decodes a relay configuration file.
func parseRelayConfig(b []byte) (relayConfig, error) {
	c := relayConfig{Dir: defaultRelayDir, Listen: ":8443"}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return relayConfig{}, fmt.Errorf("relay config: %w", err)
	}
	if dec.More() {
		return relayConfig{}, errors.New("relay config: trailing data")
	}
	if c.CacheBytes < 0 || c.RefreshInterval < 0 {
		return relayConfig{}, errors.New("relay config: negative cache_bytes or refresh_interval")
	}
	return c, nil
}

// check reports what a runnable configuration lacks.
func (c *relayConfig) check() error {
	var errs []error
	if c.Root == "" || c.MetadataURL == "" {
		errs = append(errs, errors.New("root and metadata_url are required"))
	}
	if !c.InsecureHTTP && len(c.Names) == 0 {
		errs = append(errs, errors.New("names (the gateway's DNS names or IPs, for its certificate) are required, or insecure_http"))
	}
	if c.InsecureHTTP && c.ClientCerts {
		errs = append(errs, errors.New("client_certs needs TLS: drop insecure_http"))
	}
	if c.MinTime != "" {
		if _, err := time.Parse(time.RFC3339, c.MinTime); err != nil {
			errs = append(errs, fmt.Errorf("min_time: %w", err))
		}
	}
	return errors.Join(errs...)
}

// relayFlags binds the flags of `switchback relay` over c.
func relayFlags(fs *flag.FlagSet, c *relayConfig) {
	fs.StringVar(&c.Dir, "dir", c.Dir, "relay state: trusted metadata, target cache, gateway CA")
	fs.StringVar(&c.Root, "root", c.Root, "trusted root.json")
	fs.StringVar(&c.MetadataURL, "metadata-url", c.MetadataURL, "upstream metadata URL")
	fs.StringVar(&c.TargetsURL, "targets-url", c.TargetsURL, "upstream targets URL (default: metadata URL + /targets)")
	fs.Func("hardware", "comma-separated hardware ids of the edge devices (prefetched)", listFlag(&c.Hardware))
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve on")
	fs.Func("names", "comma-separated DNS names and IPs of the gateway, for its certificate", listFlag(&c.Names))
	fs.BoolVar(&c.ClientCerts, "client-certs", c.ClientCerts, "require edge devices to present a client certificate of the gateway CA")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", c.InsecureHTTP, "serve plain HTTP (no TLS) on the local network")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", c.CacheBytes, "target cache bound in bytes (0: 4 GiB)")
	fs.StringVar(&c.MinTime, "min-time", c.MinTime, "RFC 3339 time the clock is known to be past once set")
	fs.StringVar(&c.CAFile, "ca-file", c.CAFile, "CA bundle for the upstream repository (default: system roots)")
	fs.StringVar(&c.CertFile, "cert-file", c.CertFile, "client certificate for the upstream repository")
	fs.StringVar(&c.KeyFile, "key-file", c.KeyFile, "client key for the upstream repository")
	fs.Func("refresh-interval", "time between upstream refreshes (default 5m)", func(s string) error {
		d, err := time.ParseDuration(s)
		c.RefreshInterval = duration(d)
		return err
	})
}

func listFlag(dst *[]string) func(string) error {
	return func(s string) error {
		*dst = nil
		for v := range strings.SplitSeq(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				*dst = append(*dst, v)
			}
		}
		return nil
	}
}

// runRelay is `switchback relay`: it returns the exit code.
func runRelay(ctx context.Context, args []string, verbose bool, stdout, stderr io.Writer) int {
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	var err error
	switch {
	case len(args) > 0 && args[0] == "ca":
		err = relayCA(args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "issue-cert":
		err = relayIssue(args[1:], stdout, stderr)
	default:
		err = relayServe(ctx, args, stdout, stderr, log)
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		printRelayHelp(stdout)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "switchback relay:", err)
		fmt.Fprint(stderr, relayUsage)
		return 2
	default:
		fmt.Fprintln(stderr, "switchback relay:", err)
		return 1
	}
}

// newRelayFlags returns a flag set that prints nothing itself: runRelay
// reports parse errors and prints the help.
func newRelayFlags(name string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseRelayFlags parses args, keeping flag.ErrHelp as it is (runRelay
// answers -h with the help and exit status 0).
func parseRelayFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err.Error()}
}

// printRelayHelp is `switchback relay -h`: the usage, then every flag.
func printRelayHelp(w io.Writer) {
	fmt.Fprint(w, relayUsage)
	fs := newRelayFlags("", w)
	fs.String("relay-config", "", "relay configuration file (JSON); flags override it")
	relayFlags(fs, &relayConfig{})
	fs.SetOutput(w)
	fmt.Fprintln(w, "\nflags:")
	fs.PrintDefaults()
}

func relayCA(args []string, stdout, stderr io.Writer) error {
	fs := newRelayFlags("ca", stderr)
	dir := fs.String("dir", defaultRelayDir, "relay state directory")
	if err := parseRelayFlags(fs, args); err != nil {
		return err
	}
	ca, err := relay.LoadCA(filepath.Join(*dir, "tls"), nil)
	if err != nil {
		return err
	}
	_, err = stdout.Write(ca.CertPEM())
	return err
}

func relayIssue(args []string, stdout, stderr io.Writer) error {
	fs := newRelayFlags("issue-cert", stderr)
	dir := fs.String("dir", defaultRelayDir, "relay state directory")
	name := fs.String("name", "", "the edge device's name (certificate common name)")
	out := fs.String("out", "", "write PREFIX.pem and PREFIX.key (mode 0600)")
	validity := fs.Duration("validity", relay.DefaultClientValidity, "validity of the certificate")
	if err := parseRelayFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return usageError{"issue-cert: -name and -out are required"}
	}
	ca, err := relay.LoadCA(filepath.Join(*dir, "tls"), nil)
	if err != nil {
		return err
	}
	cert, key, err := ca.IssueClientCert(*name, *validity)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".key", key, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pem", cert, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s.pem and %s.key for %s, signed by %s\n", *out, *out, *name, ca.CertFile())
	return nil
}

// relayConfigFrom reads -relay-config (if given) and applies the flags
// over it.
func relayConfigFrom(args []string, stderr io.Writer) (relayConfig, error) {
	c := relayConfig{Dir: defaultRelayDir, Listen: ":8443"}
	// The file is read first, so that flags override it wherever they are.
	file := ""
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-") || name != "relay-config":
		case hasVal:
			file = val
		case i+1 < len(args):
			file = args[i+1]
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return c, err
		}
		if c, err = parseRelayConfig(b); err != nil {
			return c, err
		}
	}
	fs := newRelayFlags("", stderr)
	fs.String("relay-config", "", "relay configuration file (JSON); flags override it")
	relayFlags(fs, &c)
	if err := parseRelayFlags(fs, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usageError{"unexpected argument " + fs.Arg(0)}
	}
	return c, c.check()
}

// relayServe runs the relay until ctx ends.
func relayServe(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	c, err := relayConfigFrom(args, stderr)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(c.Root)
	if err != nil {
		return err
	}
	cfg := relay.Config{Dir: c.Dir, Root: root, MetadataURL: c.MetadataURL, TargetsURL: c.TargetsURL,
		Hardware: c.Hardware, MaxCacheBytes: c.CacheBytes, RefreshInterval: time.Duration(c.RefreshInterval),
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, Logger: log}
	if c.MinTime != "" {
		cfg.MinTime, _ = time.Parse(time.RFC3339, c.MinTime)
	}
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "http"
	if !c.InsecureHTTP {
		ca, err := relay.LoadCA(filepath.Join(c.Dir, "tls"), nil)
		if err != nil {
			return err
		}
		if srv.TLSConfig, err = ca.ServerTLS(c.Names, c.ClientCerts); err != nil {
			return err
		}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	fmt.Fprintf(stdout, "relay serving %s://%s/metadata/ and /targets/\n", scheme, ln.Addr())
	if len(c.Hardware) == 0 {
		fmt.Fprintln(stderr, "switchback relay: no hardware ids: nothing is prefetched, targets are fetched when edge devices ask")
	}
	go r.Run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
