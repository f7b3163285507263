#!/usr/bin/env bash
# Starts a real nginx for internal/download's TestNginx: HTTPS with Range on
# 127.0.0.1:18443, and the same behind mutual TLS on 127.0.0.1:18444.
# Everything lives in /tmp/switchback-nginx (override with SWITCHBACK_NGINX_DIR):
#   ca.pem                     test CA (trust it with TLSConfig.CAFile)
#   client.pem, client.key     client certificate for the mTLS port
#   www/blob.bin               8 MiB of deterministic bytes, served as /blob.bin
#   blob.sha256                its SHA-256 (hex), not served
# Idempotent: a previous instance started from the same directory is stopped.
# Needs the Debian packages nginx and openssl (see .ci/packages). Loopback only.
set -euo pipefail

dir="${SWITCHBACK_NGINX_DIR:-/tmp/switchback-nginx}"
port=18443
mport=18444
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || { echo "nginx.sh: nginx not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "nginx.sh: openssl not installed" >&2; exit 1; }

if [ -f "$dir/nginx.pid" ] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null; then
  "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -s stop || true
  for _ in $(seq 50); do [ -f "$dir/nginx.pid" ] || break; sleep 0.1; done
fi
rm -rf "$dir"
mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
chmod 755 "$dir" "$dir/www"
cd "$dir"

# Certificates: a CA, a server certificate for 127.0.0.1/localhost, a client one.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=switchback nginx test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile server.ext -out server.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=switchback-test-device" -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile client.ext -out client.pem 2>/dev/null
chmod 644 ca.pem client.pem client.key

# 8 MiB of deterministic, incompressible bytes.
head -c 8388608 /dev/zero | openssl enc -aes-128-ctr -nosalt \
  -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 > www/blob.bin
sha256sum www/blob.bin | cut -d' ' -f1 > blob.sha256
chmod 644 www/blob.bin blob.sha256

user_line=""
[ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"
cat > nginx.conf <<CONF
$user_line
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 64; }
http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  types { application/octet-stream bin; application/json json; }
  default_type application/octet-stream;
  sendfile on;
  gzip off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $dir/server.pem;
  ssl_certificate_key $dir/server.key;
  server {
    listen 127.0.0.1:$port ssl;
    root $dir/www;
  }
  server {
    listen 127.0.0.1:$mport ssl;
    root $dir/www;
    ssl_client_certificate $dir/ca.pem;
    ssl_verify_client on;
  }
}
CONF

"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -t -q
"$nginx_bin" -p "$dir" -c "$dir/nginx.conf"
for _ in $(seq 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "nginx: https://127.0.0.1:$port/blob.bin (dir $dir)"
    exit 0
  fi
  sleep 0.1
done
echo "nginx.sh: nginx did not start listening on 127.0.0.1:$port" >&2
cat "$dir/logs/error.log" >&2 || true
exit 1
