#!/usr/bin/env bash
# End-to-end test of switchback-repo, run by TestE2EScript:
#   e2e.sh WORKDIR
# with SWITCHBACK_REPO (the binary) and REPO_URL (WORKDIR/repo served over
# HTTP on 127.0.0.1, or empty) in the environment.
set -euo pipefail

work=$1
bin=${SWITCHBACK_REPO:?}
cd "$work"

fail() { echo "e2e: FAIL: $*" >&2; exit 1; }

"$bin" init -repo repo -keys keys -expiry timestamp=48h

# Keys are private files.
for k in keys/*.pem; do
	perm=$(stat -c %a "$k")
	[ "$perm" = 600 ] || fail "$k has mode $perm"
done
[ "$(ls keys/*.pem | wc -l)" = 4 ] || fail "want 4 keys"

head -c 300000 /dev/urandom > rootfs-1.0.0.img
head -c 200000 /dev/zero > rootfs-1.1.0.img
"$bin" add -repo repo -keys keys -component rootfs -version 1.0.0 -hardware board-a,board-b rootfs-1.0.0.img
"$bin" add -repo repo -keys keys -component rootfs -version 1.1.0 -hardware board-a \
	-min-version 1.0.0 -zstd -frame-size 65536 rootfs-1.1.0.img

"$bin" list -repo repo | tee list.txt
grep -q 'rootfs/1.1.0/rootfs-1.1.0.img.zst' list.txt || fail "compressed release not listed"

ts_before=$("$bin" status -repo repo -keys keys | sed -n 's/^timestamp: version \([0-9]*\).*/\1/p')
"$bin" refresh -repo repo -keys keys
ts_after=$("$bin" status -repo repo -keys keys | sed -n 's/^timestamp: version \([0-9]*\).*/\1/p')
[ "$ts_after" -gt "$ts_before" ] || fail "refresh did not bump the timestamp ($ts_before -> $ts_after)"

# Rotate the targets key: the old one stops counting.
"$bin" rotate -repo repo -keys keys -role targets
"$bin" status -repo repo -keys keys | tee status.txt
grep -q '^root: version 2' status.txt || fail "root not at version 2 after rotation"

# A device that trusts only 1.root.json walks to root v2 and picks the
# newest release it may install.
cp repo/metadata/1.root.json trusted-root.json
"$bin" verify -repo repo -root trusted-root.json -hardware board-a -installed rootfs=1.0.0 | tee verify.txt
grep -q 'install rootfs/1.1.0/rootfs-1.1.0.img.zst version 1.1.0' verify.txt || fail "board-a on 1.0.0 should get 1.1.0"
grep -q 'verified' verify.txt || fail "target bytes not verified"
"$bin" verify -repo repo -root trusted-root.json -hardware board-b | tee verify-b.txt
grep -q 'install rootfs/1.0.0/rootfs-1.0.0.img version 1.0.0' verify-b.txt || fail "board-b should get 1.0.0"
if [ -n "${REPO_URL:-}" ]; then
	"$bin" verify -url "$REPO_URL/metadata/" -root trusted-root.json -hardware board-a -installed rootfs=1.0.0 | tee verify-url.txt
	grep -q 'verified' verify-url.txt || fail "verify over HTTP"
fi

# Deltas of 1.1.0: a chunk index (with a chunk store: the target is zstd)
# and a patch from 1.0.0; the device below still installs 1.1.0.
"$bin" delta -repo repo -keys keys -target rootfs/1.1.0/rootfs-1.1.0.img.zst -image rootfs-1.1.0.img \
	-base rootfs-1.0.0.img -index
"$bin" list -repo repo > list-delta.txt
grep -q 'rootfs-1.1.0.img.zst.idx' list-delta.txt || fail "chunk index not listed"
grep -q 'rootfs-1.1.0.img.zst.from-.*\.patch' list-delta.txt || fail "patch not listed"
[ -n "$(ls repo/targets/chunks)" ] || fail "no chunk store"

# Tampering with a published target is caught.
f=$(ls repo/targets/rootfs/1.0.0/*.img)
printf 'X' | dd of="$f" bs=1 seek=10 conv=notrunc status=none
if "$bin" verify -repo repo -root trusted-root.json -hardware board-b > tampered.txt; then
	fail "verify accepted a tampered target"
fi
grep -q FAILED tampered.txt || fail "no failure reported for the tampered target"
echo "e2e: ok"
