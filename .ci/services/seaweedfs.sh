#!/usr/bin/env bash
# Starts a real S3-compatible object store, SeaweedFS (`weed server -s3`),
# for repository/s3publish's tests: plain HTTP S3 API on 127.0.0.1:19403,
# no identities configured (anonymous access, buckets made by the tests),
# data in /tmp/switchback-seaweedfs (override with SWITCHBACK_SEAWEEDFS_DIR).
# Tests find it at SWITCHBACK_S3 (default http://127.0.0.1:19403).
# The binary comes from .ci/weed (built once from the Go module proxy and
# cached, about 4.5 minutes the first time). Idempotent: a previous
# instance started from the same directory is stopped. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="${SWITCHBACK_SEAWEEDFS_DIR:-/tmp/switchback-seaweedfs}"
# master, volume, filer, s3 (each also uses its port + 10000 for gRPC)
mport=19400 vport=19401 fport=19402 sport=19403
weed="$(bash .ci/weed)"

if [ -f "$dir/weed.pid" ] && kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
  pid="$(cat "$dir/weed.pid")"
  kill "$pid" || true
  # It takes over 10 s to exit on SIGTERM.
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -rf "$dir"
mkdir -p "$dir/data"
# Every bucket is a collection of its own, for which the master grows 7
# volumes at once by default: grow one at a time, so that the tests' many
# small buckets do not use up the volume slots.
WEED_MASTER_VOLUME_GROWTH_COPY_1=1 nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/data" \
  -master.port=$mport -volume.port=$vport -filer.port=$fport \
  -master.volumeSizeLimitMB=64 -volume.max=200 \
  -s3 -s3.port=$sport > "$dir/weed.log" 2>&1 &
echo $! > "$dir/weed.pid"
# Ready when the S3 API answers a bucket listing (about 15 s).
for _ in $(seq 600); do
  if curl -fsS "http://127.0.0.1:$sport/" >/dev/null 2>&1; then
    echo "seaweedfs: S3 API on http://127.0.0.1:$sport (dir $dir)"
    exit 0
  fi
  kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null || break
  sleep 0.1
done
echo "seaweedfs.sh: weed did not answer on 127.0.0.1:$sport" >&2
tail -50 "$dir/weed.log" >&2 || true
exit 1
