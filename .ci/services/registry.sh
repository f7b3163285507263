#!/usr/bin/env bash
# Starts a real container registry (docker-registry, Debian's packaging of
# the CNCF distribution registry) for the oci tests and examples/containers:
# plain HTTP on 127.0.0.1:15000, blob deletion enabled, storage in
# /tmp/switchback-registry (override with SWITCHBACK_REGISTRY_DIR).
# Tests find it at SWITCHBACK_REGISTRY (default 127.0.0.1:15000).
# Idempotent: a previous instance started from the same directory is stopped.
set -euo pipefail

dir="${SWITCHBACK_REGISTRY_DIR:-/tmp/switchback-registry}"
port=15000
bin="$(command -v docker-registry || echo /usr/bin/docker-registry)"
[ -x "$bin" ] || { echo "registry.sh: docker-registry not installed" >&2; exit 1; }

if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
  kill "$(cat "$dir/registry.pid")" || true
  for _ in $(seq 50); do kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || break; sleep 0.1; done
fi
rm -rf "$dir"
mkdir -p "$dir/data"
cat > "$dir/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
CONF
nohup "$bin" serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
echo $! > "$dir/registry.pid"
for _ in $(seq 50); do
  if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
    echo "registry: http://127.0.0.1:$port (dir $dir)"
    exit 0
  fi
  sleep 0.1
done
echo "registry.sh: docker-registry did not answer on 127.0.0.1:$port" >&2
cat "$dir/registry.log" >&2 || true
exit 1
