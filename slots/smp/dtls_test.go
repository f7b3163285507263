package smp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
)

// certs makes a CA and two certificates it signs: the MCU's (for
// mcu.local) and the gateway's.
func certs(t *testing.T) (pool *x509.CertPool, server, client tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(n int64, name string, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, leaf(2, "mcu.local", x509.ExtKeyUsageServerAuth), leaf(3, "gateway", x509.ExtKeyUsageClientAuth)
}

// TestDTLS runs a trial over DTLS, with a pre-shared key and with
// certificates both ways. Each reset of the MCU drops its DTLS session;
// the gateway shakes hands again.
func TestDTLS(t *testing.T) {
	pool, server, client := certs(t)
	psk := &smp.DTLSConfig{PSKIdentity: []byte("sensor-01"), PSK: []byte("0123456789abcdef")}
	for name, c := range map[string]struct{ server, client *smp.DTLSConfig }{
		"psk":          {psk, psk},
		"certificates": {&smp.DTLSConfig{Certificates: []tls.Certificate{server}, ClientCAs: pool}, &smp.DTLSConfig{Certificates: []tls.Certificate{client}, RootCAs: pool, ServerName: "mcu.local"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOptions{dtls: c.server})
			d := r.device(t, rigOptions{dtls: c.client}, t.TempDir())
			commitTrial(t, d, r.mcu, image(30_000, 2, nil))
		})
	}
}

// TestDTLSRefusals: wrong credentials get no session, and a plain client
// gets no answer from a DTLS device; plain UDP must be asked for.
func TestDTLSRefusals(t *testing.T) {
	pool, server, _ := certs(t)
	otherPool, _, _ := certs(t)
	psk := &smp.DTLSConfig{PSKIdentity: []byte("sensor-01"), PSK: []byte("0123456789abcdef")}
	certServer := &smp.DTLSConfig{Certificates: []tls.Certificate{server}}
	for name, c := range map[string]struct{ server, client *smp.DTLSConfig }{
		"wrong psk":      {psk, &smp.DTLSConfig{PSKIdentity: []byte("sensor-01"), PSK: []byte("not the key.....")}},
		"unknown id":     {psk, &smp.DTLSConfig{PSKIdentity: []byte("sensor-02"), PSK: psk.PSK}},
		"untrusted cert": {certServer, &smp.DTLSConfig{RootCAs: otherPool, ServerName: "mcu.local"}},
		"wrong name":     {certServer, &smp.DTLSConfig{RootCAs: pool, ServerName: "other.local"}},
		"plain client":   {psk, nil},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOptions{dtls: c.server})
			u, err := smp.NewUDP(smp.UDPConfig{Addr: r.addr, DTLS: c.client, Plain: c.client == nil})
			if err != nil {
				t.Fatal(err)
			}
			cl := smp.NewClient(u, smp.ClientConfig{Timeout: 200 * time.Millisecond, Retries: 1})
			defer cl.Close()
			if _, err := cl.Echo(context.Background(), "x"); !errors.Is(err, smp.ErrNoResponse) {
				t.Errorf("Echo: %v, want ErrNoResponse", err)
			}
		})
	}
	for name, cfg := range map[string]smp.UDPConfig{
		"no credentials": {Addr: "127.0.0.1:1337"},
		"both":           {Addr: "127.0.0.1:1337", Plain: true, DTLS: psk},
		"psk without id": {Addr: "127.0.0.1:1337", DTLS: &smp.DTLSConfig{PSK: []byte("k")}},
		"psk and certs":  {Addr: "127.0.0.1:1337", DTLS: &smp.DTLSConfig{PSK: []byte("k"), PSKIdentity: []byte("i"), RootCAs: pool}},
		"empty DTLS":     {Addr: "127.0.0.1:1337", DTLS: &smp.DTLSConfig{}},
		"bad address":    {Addr: "no port", Plain: true},
	} {
		if _, err := smp.NewUDP(cfg); !errors.Is(err, smp.ErrConfig) {
			t.Errorf("%s: NewUDP = %v, want ErrConfig", name, err)
		}
	}
}
