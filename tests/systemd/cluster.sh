#!/usr/bin/env bash
# A cluster node under real systemd (PID 1 in a container), with a redis-server beside it:
# `systemctl restart` keeps the node (same node id, no departure, the sessions taken over
# from the fd store), `systemctl stop` departs at once as before.
#
#   tests/systemd/cluster.sh        (root; needs systemd-nspawn and redis-server)
#
# Prints "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${REALTIME_BIN:-$REPO/target/debug/realtime}

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: the systemd container test needs root (CI runs as root)"
  exit 0
fi
for tool in systemd-nspawn nsenter redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tests/run installs it)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }

# shellcheck source=../lib/container.sh
. tests/lib/container.sh

W=$(mktemp -d /tmp/realtime-cluster-ct.XXXXXX)
cleanup() {
  set +e
  ct_stop
  rmdir "$W" 2>/dev/null
}
trap cleanup EXIT

ct_prepare
install -m 0755 "$BIN" "$R/usr/bin/realtime"
install -m 0644 systemd/realtime.service systemd/realtime.socket systemd/realtime-flash.socket \
  "$R/etc/systemd/system/"
mkdir -p "$R/etc/realtime"
cat >"$R/etc/realtime/realtime.conf" <<'EOF'
[Server]
user = realtime
[Cluster]
redis = redis://127.0.0.1:6399/0
heartbeat = 1s
node-timeout = 3s
EOF
cat >"$R/etc/systemd/system/test-redis.service" <<'EOF'
[Service]
ExecStart=/usr/bin/redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no
EOF
chroot "$R" useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin realtime

ct_boot realtime-cluster-test

journal() { in_ct journalctl --no-pager -o cat -u realtime.service; }
count() { journal | grep -c "$1" || true; }

in_ct systemctl start test-redis.service
wait_for 10 in_ct redis-cli -p 6399 ping
in_ct systemctl start realtime.socket realtime.service
check "the node joined the cluster" wait_for 20 bash -c "timeout 5 nsenter -t $P -a journalctl -o cat -u realtime.service | grep -q 'joined the cluster'"
node=$(journal | sed -n 's/.*joining the cluster through Redis node=\([^ ]*\).*/\1/p' | head -1)
echo "node id: $node"

in_ct systemctl restart realtime.service
check "a restart asks systemd and keeps the node" wait_for 20 bash -c "[[ \$(timeout 5 nsenter -t $P -a journalctl -o cat -u realtime.service | grep -c 'joined the cluster') -ge 2 ]]"
check "the state was left with systemd" test "$(count 'state left with systemd for a restart')" -ge 1
check "the new process took over from the store" test "$(count 'took over the sessions of the previous process')" -ge 1
check "the new process is the same node ($node)" \
  test "$(journal | grep -c "joining the cluster through Redis node=$node")" -ge 2
check "the restart did not depart" test "$(count 'left the cluster')" = 0
check "the node is still in Redis" bash -c "[[ \$(timeout 5 nsenter -t $P -a redis-cli -p 6399 --raw ZRANGE realtime:nodes 0 -1) == *$node* ]]"

in_ct systemctl stop realtime.service
check "a plain stop departs at once" test "$(count 'left the cluster')" = 1
check "a plain stop leaves no state" test "$(count 'state left with systemd for a restart')" = 1
check "the node is gone from Redis" bash -c "[[ \$(timeout 5 nsenter -t $P -a redis-cli -p 6399 --raw ZRANGE realtime:nodes 0 -1) != *$node* ]]"
if ((FAIL > 0)); then journal | tail -40; fi

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
