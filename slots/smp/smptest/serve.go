package smptest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/pion/dtls/v4"
	"github.com/switchback-ota/switchback/slots/smp"
)

// server is one transport the MCU answers on.
type server interface {
	// reset drops what a reset of the MCU loses (DTLS sessions).
	reset()
	close() error
}

func (m *MCU) addServer(s server) {
	m.mu.Lock()
	m.servers = append(m.servers, s)
	m.mu.Unlock()
}

// ServeUDP answers SMP over plain UDP on addr ("127.0.0.1:0" picks a
// port) and returns the address it listens on.
func (m *MCU) ServeUDP(addr string) (string, error) {
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", err
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return "", err
	}
	m.addServer(udpServer{conn})
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := m.handle(buf[:n]); resp != nil {
				conn.WriteTo(resp, from)
			}
		}
	}()
	return conn.LocalAddr().String(), nil
}

type udpServer struct{ conn *net.UDPConn }

func (udpServer) reset()         {}
func (s udpServer) close() error { return s.conn.Close() }

// ServeDTLS answers SMP over DTLS on addr with the credentials in cfg and
// returns the address it listens on. A reset of the MCU drops every
// session, as a real one does: clients shake hands again. (Handshakes
// are answered even while the MCU is off; requests are not.)
func (m *MCU) ServeDTLS(addr string, cfg *smp.DTLSConfig) (string, error) {
	opts, err := cfg.ServerOptions()
	if err != nil {
		return "", err
	}
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", err
	}
	s := &dtlsServer{m: m, opts: opts, conns: map[net.Conn]bool{}}
	if err := s.listen(laddr); err != nil {
		return "", err
	}
	m.addServer(s)
	return s.addr.String(), nil
}

type dtlsServer struct {
	m    *MCU
	opts []dtls.ServerOption

	mu    sync.Mutex
	addr  *net.UDPAddr
	ln    net.Listener
	conns map[net.Conn]bool
}

func (s *dtlsServer) listen(laddr *net.UDPAddr) error {
	ln, err := dtls.ListenAddr("udp", laddr, s.opts...)
	if err != nil {
		return err
	}
	s.ln, s.addr = ln, ln.Addr().(*net.UDPAddr)
	go s.accept(ln)
	return nil
}

func (s *dtlsServer) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ln == nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *dtlsServer) serve(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if resp := s.m.handle(buf[:n]); resp != nil {
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	}
}

// reset drops the sessions. The socket stays: a client that shakes hands
// again does so from a new port, as a new session.
func (s *dtlsServer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
}

func (s *dtlsServer) drop() {
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

func (s *dtlsServer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	return err
}

// ServeSerial answers SMP console frames on a serial line (for example
// the device side of a pty). Close closes rw.
func (m *MCU) ServeSerial(rw io.ReadWriteCloser) {
	m.addServer(serialServer{rw})
	go func() {
		br := bufio.NewReaderSize(rw, 4096)
		var d smp.SerialDecoder
		for {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				for errors.Is(err, bufio.ErrBufferFull) { // an over-long line: dropped
					_, err = br.ReadSlice('\n')
				}
				continue
			}
			if err != nil {
				return
			}
			p, _ := d.Line(line)
			if p == nil {
				continue
			}
			if resp := m.handle(p); resp != nil {
				if b, err := smp.EncodeSerial(resp); err == nil {
					rw.Write(b)
				}
			}
		}
	}()
}

type serialServer struct{ rw io.ReadWriteCloser }

func (serialServer) reset()         {}
func (s serialServer) close() error { return s.rw.Close() }
