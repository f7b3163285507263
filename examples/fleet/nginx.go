package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/relay"
)

// nginxServer is a private nginx serving a directory over HTTPS on
// 127.0.0.1, configured as .ci/services/nginx.sh configures the shared
// one (static files, sendfile, strong ETags, no gzip), with the access log
// off and keep-alive connections long enough for a whole simulation.
type nginxServer struct {
	dir   string // prefix: nginx.conf, certificates, logs
	cmd   *exec.Cmd
	Addr  string // host:port
	CA    *x509.CertPool
	stopc chan error
}

// ErrNoNginx means the nginx program is not installed.
var ErrNoNginx = errors.New("nginx not installed (Debian package nginx)")

const nginxConf = `%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/tmp/body;
  proxy_temp_path %[2]s/tmp/proxy;
  fastcgi_temp_path %[2]s/tmp/fastcgi;
  uwsgi_temp_path %[2]s/tmp/uwsgi;
  scgi_temp_path %[2]s/tmp/scgi;
  types { application/octet-stream bin; application/json json; }
  default_type application/octet-stream;
  sendfile on;
  gzip off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate %[2]s/server.pem;
  ssl_certificate_key %[2]s/server.key;
  server {
    listen %[3]s ssl;
    root %[4]s;
  }
}
`

// startNginx serves root on a free port of 127.0.0.1 until ctx ends or
// stop is called; dir receives its configuration and certificates.
func startNginx(ctx context.Context, dir, root string) (*nginxServer, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, ErrNoNginx
		}
		bin = "/usr/sbin/nginx"
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	pool, err := writeCerts(dir)
	if err != nil {
		return nil, fmt.Errorf("nginx certificates: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	userLine := ""
	if os.Geteuid() == 0 { // nginx drops to "nobody" otherwise, who may not read root's temp dirs
		if u, err := user.Current(); err == nil {
			if g, err := user.LookupGroupId(u.Gid); err == nil {
				userLine = "user " + u.Username + " " + g.Name + ";"
			}
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, userLine, dir, addr, root), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	s := &nginxServer{dir: dir, cmd: cmd, Addr: addr, CA: pool, stopc: make(chan error, 1)}
	go func() { s.stopc <- cmd.Wait() }()
	if err := s.waitListening(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *nginxServer) waitListening() error {
	for range 100 {
		select {
		case err := <-s.stopc:
			log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			return fmt.Errorf("nginx exited: %v: %s", err, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nginx did not listen on %s", s.Addr)
}

// stop ends nginx (the process this program started) and waits for it.
func (s *nginxServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.stopc:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.stopc
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 in dir
// (server.pem, server.key: the gateway relay's CA does the job) and
// returns a pool holding the CA.
func writeCerts(dir string) (*x509.CertPool, error) {
	ca, err := relay.LoadCA(dir, nil)
	if err != nil {
		return nil, err
	}
	if _, err := ca.ServerCertificate([]string{"127.0.0.1"}); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	return pool, nil
}

// tlsConfig trusts only the simulation's CA.
func (s *nginxServer) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CA, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"}
}
