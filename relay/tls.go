package relay

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/switchback-ota/switchback/internal/durable"
)

// CACertFile is the name of the CA certificate in the TLS directory
// ([LoadCA]), the file edge devices pin.
const CACertFile = "ca.pem"

// DefaultClientValidity is the validity of a client certificate when
// [CA.IssueClientCert] is given zero.
const DefaultClientValidity = 2 * 365 * 24 * time.Hour

// The other files of the TLS directory, and validity periods.
const (
	caKeyFile      = "ca.key"
	serverCertFile = "server.pem"
	serverKeyFile  = "server.key"
	caValidity     = 20 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
	// renewBefore: a server certificate closer than this to its expiry
	// is issued again at start.
	renewBefore = 30 * 24 * time.Hour
)

// CA is the gateway's certificate authority: an ECDSA P-256 key and a
// self-signed certificate made on first use and kept in a directory
// (ca.key mode 0600, ca.pem). Edge devices pin ca.pem (updater.Config
// CAFile) rather than trust a public authority the local network cannot
// reach. The CA signs the relay's server certificate and, when edge
// devices must authenticate, their client certificates.
type CA struct {
	dir  string
	cert *x509.Certificate
	pem  []byte
	key  crypto.Signer
	now  func() time.Time
}

// LoadCA loads the gateway CA from dir, making it (durably) when dir holds
// none. now is the clock; nil means time.Now.
func LoadCA(dir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay: tls dir: %w", err)
	}
	ca := &CA{dir: dir, now: now}
	cert, key, err := loadPair(filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile))
	switch {
	case err == nil:
		ca.cert, ca.key = cert, key
		ca.pem, err = os.ReadFile(filepath.Join(dir, CACertFile))
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		return ca, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("relay: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "switchback gateway CA"},
		NotBefore:             now().Add(-time.Hour),
		NotAfter:              now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	certPEM, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	if err := writePair(filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile), certPEM, key); err != nil {
		return nil, err
	}
	ca.cert, _ = parseCertPEM(certPEM)
	ca.pem, ca.key = certPEM, key
	return ca, nil
}

// CertPEM returns the CA certificate, for edge devices to pin.
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.pem) }

// CertFile returns the path of the CA certificate file.
func (ca *CA) CertFile() string { return filepath.Join(ca.dir, CACertFile) }

// ServerCertificate returns the relay's server certificate for names (DNS
// names or IP addresses): the one stored in the directory when it is
// signed by this CA, covers exactly these names and is not about to
// expire, else a new one, stored durably.
func (ca *CA) ServerCertificate(names []string) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("relay: server certificate: no names")
	}
	certPath, keyPath := filepath.Join(ca.dir, serverCertFile), filepath.Join(ca.dir, serverKeyFile)
	if cert, _, err := loadPair(certPath, keyPath); err == nil && ca.covers(cert, names) {
		return tls.LoadX509KeyPair(certPath, keyPath)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	certPEM, keyPEM, err := ca.issue(tmpl, serverValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := durable.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("relay: %w", err)
	}
	if err := durable.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("relay: %w", err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// covers reports whether cert is a usable server certificate of this CA
// for exactly names.
func (ca *CA) covers(cert *x509.Certificate, names []string) bool {
	if cert.CheckSignatureFrom(ca.cert) != nil || ca.now().Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	var have []string
	have = append(have, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	var want []string
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		want = append(want, n)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

// IssueClientCert issues a client certificate for an edge device, named
// commonName, valid for validity (zero: DefaultClientValidity), and
// returns it and its new ECDSA P-256 key in PEM. The key never touches the
// disk here: hand both to the device (updater.Config CertFile, KeyFile).
func (ca *CA) IssueClientCert(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("relay: client certificate: empty name")
	}
	if validity == 0 {
		validity = DefaultClientValidity
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, validity)
}

// ServerTLS returns the TLS configuration of the relay's listener: its
// server certificate for names, TLS 1.2 at least, and, when
// requireClientCerts is set, a client certificate signed by this CA
// required from every edge device.
func (ca *CA) ServerTLS(names []string, requireClientCerts bool) (*tls.Config, error) {
	cert, err := ca.ServerCertificate(names)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if requireClientCerts {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// issue signs tmpl with a new key for validity and returns both in PEM.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: key: %w", err)
	}
	tmpl.NotBefore = ca.now().Add(-time.Hour)
	tmpl.NotAfter = ca.now().Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if certPEM, err = sign(tmpl, ca.cert, key.Public(), ca.key); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = keyToPEM(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("relay: serial: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("relay: sign certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func keyToPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("relay: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writePair stores a key (first, mode 0600) and its certificate durably.
func writePair(certPath, keyPath string, certPEM []byte, key crypto.Signer) error {
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := durable.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// loadPair reads a PEM certificate and its PKCS#8 key and checks they go
// together. A missing file wraps fs.ErrNotExist.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("relay: %s: key cannot sign", keyPath)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %s: %w", certPath, err)
	}
	return cert, key, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("relay: no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
