package smp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v4/pkg/protocol"
)

// UDPConfig configures a [UDP] transport. SMP over UDP carries one packet
// per datagram (Zephyr's default port is 1337).
type UDPConfig struct {
	// Addr is the device's host:port. Required.
	Addr string
	// DTLS secures the link, as Zephyr's UDP transport can (DTLS 1.2 with
	// a pre-shared key or certificates). Required unless Plain is set.
	DTLS *DTLSConfig
	// Plain sends SMP in clear UDP datagrams. Only for devices built
	// without DTLS: anyone on the local network can then read and forge
	// management requests (the device still checks its MCUboot signature).
	Plain bool
}

// DTLSConfig holds the credentials of a DTLS link. Set PSK (and
// PSKIdentity), or Certificates and RootCAs.
type DTLSConfig struct {
	// PSKIdentity and PSK are a pre-shared key and its identity.
	PSKIdentity []byte
	PSK         []byte
	// Certificates are presented to the peer (the device's server
	// certificate, or the gateway's client certificate).
	Certificates []tls.Certificate
	// RootCAs verify the peer's certificate; ClientCAs, on a server, the
	// client's (a client certificate is then required).
	RootCAs   *x509.CertPool
	ClientCAs *x509.CertPool
	// ServerName is checked against the device's certificate.
	ServerName string
}

// ErrConfig is returned for an invalid configuration.
var ErrConfig = errors.New("smp: invalid configuration")

func (c *DTLSConfig) validate() error {
	psk, cert := len(c.PSK) > 0, len(c.Certificates) > 0 || c.RootCAs != nil
	switch {
	case psk && cert:
		return fmt.Errorf("%w: DTLS: set a PSK or certificates, not both", ErrConfig)
	case !psk && !cert:
		return fmt.Errorf("%w: DTLS: no PSK and no certificates", ErrConfig)
	case psk && len(c.PSKIdentity) == 0:
		return fmt.Errorf("%w: DTLS: PSK without an identity", ErrConfig)
	}
	return nil
}

// ClientOptions returns the pion/dtls options of a client with these
// credentials: DTLS 1.2 (what Zephyr's mbed TLS offers), the PSK suites
// TLS_PSK_WITH_AES_128_CCM_8 and _GCM_SHA256, or certificate suites.
func (c *DTLSConfig) ClientOptions() ([]dtls.ClientOption, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	opts := []dtls.ClientOption{dtls.WithMinVersion(protocol.Version1_2), dtls.WithMaxVersion(protocol.Version1_2)}
	if len(c.PSK) > 0 {
		psk := dtls.PSK{Identity: c.PSKIdentity, Key: c.PSK}
		return append(opts, dtls.WithPSK(func() ([]dtls.PSK, error) { return []dtls.PSK{psk}, nil }, nil),
			dtls.WithCipherSuites(ciphersuite.TLS_PSK_WITH_AES_128_CCM_8, ciphersuite.TLS_PSK_WITH_AES_128_GCM_SHA256)), nil
	}
	opts = append(opts, dtls.WithCertificates(c.Certificates...), dtls.WithServerName(c.ServerName))
	if c.RootCAs != nil {
		opts = append(opts, dtls.WithRootCAs(c.RootCAs))
	}
	return opts, nil
}

// ServerOptions returns the pion/dtls options of a server (a device, such
// as smptest's simulated MCU) with these credentials.
func (c *DTLSConfig) ServerOptions() ([]dtls.ServerOption, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	opts := []dtls.ServerOption{dtls.WithMinVersion(protocol.Version1_2), dtls.WithMaxVersion(protocol.Version1_2)}
	if len(c.PSK) > 0 {
		key, id := c.PSK, string(c.PSKIdentity)
		lookup := func(ids [][]byte) (*dtls.PSK, error) {
			for _, got := range ids {
				if string(got) == id {
					return &dtls.PSK{Identity: got, Key: key}, nil
				}
			}
			return nil, nil
		}
		return append(opts, dtls.WithPSK(nil, lookup),
			dtls.WithCipherSuites(ciphersuite.TLS_PSK_WITH_AES_128_CCM_8, ciphersuite.TLS_PSK_WITH_AES_128_GCM_SHA256)), nil
	}
	opts = append(opts, dtls.WithCertificates(c.Certificates...))
	if c.ClientCAs != nil {
		opts = append(opts, dtls.WithClientCAs(c.ClientCAs), dtls.WithClientAuth(dtls.RequireAndVerifyClientCert))
	}
	return opts, nil
}

// UDP is a [Transport] over UDP, with DTLS unless configured off. It
// connects on first use and again after [UDP.Reconnect] (a device that
// resets forgets its DTLS session). It is safe for concurrent use.
type UDP struct {
	cfg   UDPConfig
	raddr *net.UDPAddr
	opts  []dtls.ClientOption

	mu   sync.Mutex
	conn net.Conn
	buf  []byte // Receive's buffer: the Client receives one packet at a time
}

// NewUDP checks cfg and returns a transport; it does not connect yet.
func NewUDP(cfg UDPConfig) (*UDP, error) {
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: UDP address %q: %w", ErrConfig, cfg.Addr, err)
	}
	u := &UDP{cfg: cfg, raddr: raddr}
	switch {
	case cfg.DTLS != nil && cfg.Plain:
		return nil, fmt.Errorf("%w: UDP: DTLS and Plain both set", ErrConfig)
	case cfg.DTLS != nil:
		if u.opts, err = cfg.DTLS.ClientOptions(); err != nil {
			return nil, err
		}
	case !cfg.Plain:
		return nil, fmt.Errorf("%w: UDP: DTLS credentials required (set Plain for a device without DTLS)", ErrConfig)
	}
	return u, nil
}

// connection returns the connection, dialling (and for DTLS, shaking
// hands) if there is none.
func (u *UDP) connection(ctx context.Context) (net.Conn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		return u.conn, nil
	}
	if u.cfg.DTLS == nil {
		c, err := net.DialUDP("udp", nil, u.raddr)
		if err != nil {
			return nil, err
		}
		u.conn = c
		return c, nil
	}
	c, err := dtls.Dial("udp", u.raddr, u.opts...)
	if err != nil {
		return nil, err
	}
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("smp: DTLS handshake with %s: %w", u.cfg.Addr, err)
	}
	u.conn = c
	return c, nil
}

// Send writes one packet as one datagram.
func (u *UDP) Send(ctx context.Context, packet []byte) error {
	c, err := u.connection(ctx)
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(d)
	}
	_, err = c.Write(packet)
	return err
}

// Receive reads the next datagram. Errors of a connected UDP socket that
// a later datagram can cure (ICMP port unreachable while the device
// restarts) are waited out until ctx ends.
func (u *UDP) Receive(ctx context.Context) ([]byte, error) {
	c, err := u.connection(ctx)
	if err != nil {
		return nil, err
	}
	if u.buf == nil {
		u.buf = make([]byte, 64<<10)
	}
	buf := u.buf
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := time.Now().Add(100 * time.Millisecond)
		if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
			d = cd
		}
		c.SetReadDeadline(d)
		n, err := c.Read(buf)
		if err == nil {
			return bytes.Clone(buf[:n]), nil
		}
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if u.cfg.DTLS != nil {
			return nil, err // a DTLS session that failed is not coming back
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reconnect drops the connection; the next Send dials again.
func (u *UDP) Reconnect(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		u.conn.Close()
		u.conn = nil
	}
	return nil
}

// Close closes the connection.
func (u *UDP) Close() error { return u.Reconnect(context.Background()) }

var (
	_ Transport   = (*UDP)(nil)
	_ Reconnector = (*UDP)(nil)
	_ Transport   = (*Serial)(nil)
)
