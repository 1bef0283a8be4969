#!/usr/bin/env bash
# The daemon under real systemd (PID 1 in a container), as installed: both sockets listen
# while the service, running as user realtime, starts on the first connection; a stock
# client connects; `systemctl reload` returns after READY=1; journalctl filters by the
# daemon's priorities; a restart refuses no connection; SIGUSR1 (in place, same PID) and
# systemctl restart (the fd store) keep a client's sessions and a WebSocket's connection
# itself, a stop closes the connection (1001) and empties the store; a
# stuck hub is killed by the watchdog and restarted; stop exits cleanly.
#
#   tests/systemd/container.sh        (root; needs systemd-nspawn and tests/node_modules)
#
# The container is an overlay of / on a tmpfs with its own network; everything is
# undone on exit. Prints "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${REALTIME_BIN:-$REPO/target/debug/realtime}

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: the systemd container test needs root (CI runs as root)"
  exit 0
fi
for tool in systemd-nspawn nsenter node; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tests/run installs it)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
[[ -d tests/node_modules/socket.io-client ]] || { echo "run npm ci --prefix tests first" >&2; exit 1; }

# shellcheck source=../lib/container.sh
. tests/lib/container.sh

W=$(mktemp -d /tmp/realtime-container.XXXXXX)
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
# A 2011 key: accepted with a warning, so the journal has a warning to filter on.
flash-server-port = 843
EOF
chroot "$R" useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin realtime
# The test's own drop-in for the watchdog check comes later; nothing else is changed.

# ---------------------------------------------------------------- boot
ct_boot realtime-test

journal() { in_ct journalctl --no-pager -o cat -u realtime.service "$@"; }
main_pid() { in_ct systemctl show -P MainPID realtime.service; }

# ---------------------------------------------------------------- sockets, first start
in_ct systemctl enable --now realtime.socket >/dev/null 2>&1
check "enabling realtime.socket opens realtime-flash.socket too" \
  in_ct systemctl is-active --quiet realtime.socket realtime-flash.socket
check "the service waits for the first connection" \
  bash -c "[[ \$(timeout 30 nsenter -t $P -a systemctl is-active realtime.service) == inactive ]]"

policy=$(in_net bash -c 'exec 3<>/dev/tcp/127.0.0.1/843; printf "<policy-file-request/>\0" >&3; timeout 10 cat <&3 | tr "\0" "@"' || true)
check "port 843 answers the Flash policy request (allowing 8001), NUL-terminated" \
  bash -c '[[ $1 == *"to-ports=\"8001\""* && $1 == *"</cross-domain-policy>"?"@" ]]' _ "$policy"
check "the first connection started the service" \
  wait_for 10 in_ct systemctl is-active --quiet realtime.service
uid=$(in_ct id -u realtime)
pid=$(main_pid)
check "the service runs as user realtime (uid $uid)" \
  bash -c "timeout 5 nsenter -t $P -a grep -Eq \"^Uid:\\s+$uid\\s+$uid\" /proc/$pid/status"
check "HTTP listens on IPv4" in_net curl -fsS -m 5 -o /dev/null http://127.0.0.1:8001/healthz
check "HTTP listens on IPv6" in_net curl -fsS -m 5 -o /dev/null 'http://[::1]:8001/healthz'
out=$(in_net node tests/systemd/client.mjs connect http://127.0.0.1:8001 2>&1 || true)
check "a stock socket.io-client connects and subscribes ($out)" \
  bash -c '[[ $1 == *"\"ok\":true"* ]]' _ "$out"
check "STATUS= reaches systemctl" \
  bash -c "timeout 5 nsenter -t $P -a systemctl show -P StatusText realtime.service | grep -q connections"

# ---------------------------------------------------------------- reload
reload_ok=0
in_ct systemctl reload realtime.service && reload_ok=1
check "systemctl reload succeeds" test "$reload_ok" = 1
# systemctl reload returns only after READY=1, which follows this line.
check "systemctl reload returned after the reload was done" \
  bash -c "timeout 10 nsenter -t $P -a journalctl --no-pager -o cat -u realtime.service | grep -q 'configuration reloaded from /etc/realtime/realtime.conf'"
check "the reload kept the same process" test "$(main_pid)" = "$pid"

# ---------------------------------------------------------------- journal priorities
warnings=$(journal -p warning || true)
infos=$(journal -p info || true)
check "journalctl -p warning shows the daemon's warnings" \
  bash -c '[[ $1 == *"2011 key ignored"* ]]' _ "$warnings"
check "journalctl -p warning hides its info lines" \
  bash -c '[[ $1 != *"listening on"* ]]' _ "$warnings"
check "journalctl -p info shows its info lines" \
  bash -c '[[ $1 == *"listening on"* ]]' _ "$infos"

# ---------------------------------------------------------------- restart refuses nothing
flag=$W/stop-loop
in_net node tests/systemd/client.mjs loop 8001 "$flag" >"$W/loop.out" 2>&1 &
LOOP=$!
sleep 1
for _ in 1 2 3; do
  in_ct systemctl restart realtime.service
  sleep 0.5
done
sleep 0.5
touch "$flag"
wait "$LOOP" || true
counts=$(cat "$W/loop.out")
echo "handshakes during three restarts: $counts"
check "restarts refuse no connection" bash -c '[[ $1 == *"\"refused\":0,"* ]]' _ "$counts"
check "restarts fail no handshake" bash -c '[[ $1 == *"\"failed\":0,"* && $1 != *"\"ok\":0,"* ]]' _ "$counts"
check "the restarts replaced the process" bash -c "[[ \$(timeout 5 nsenter -t $P -a systemctl show -P MainPID realtime.service) != $pid ]]"

# ---------------------------------------------------------------- in place (SIGUSR1)
# no_drops JSON: neither the WebSocket tab nor the polling tab of client.mjs keep saw a disconnect.
no_drops() { [[ $1 == *'"wsDisconnects":0'* && $1 == *'"pollingDisconnects":0'* ]]; }
has() { [[ $1 == *"$2"* ]]; }
pid=$(main_pid)
rm -f "$flag"
in_net node tests/systemd/client.mjs keep 8001 "$flag" >"$W/keep.out" 2>&1 &
KEEP=$!
sleep 1
for _ in 1 2 3; do
  in_ct systemctl kill --kill-whom=main --signal=USR1 realtime.service
  wait_for 15 bash -c "[[ \$(timeout 5 nsenter -t $P -a systemctl is-active realtime.service) == active ]]" || true
  sleep 0.5
done
touch "$flag"
wait "$KEEP" || true
kept=$(cat "$W/keep.out")
echo "three in-place restarts: $kept"
check "in-place restarts keep the main PID" test "$(main_pid)" = "$pid"
check "the new process took the sessions over each time" \
  bash -c "[[ \$(timeout 10 nsenter -t $P -a journalctl --no-pager -o cat -u realtime.service | grep -c 'took over the sessions of the previous process') -ge 3 ]]"
check "every message once and in order, on both tabs" has "$kept" '"inOrder":true,"churn"'
check "no membership event" has "$kept" '"churn":0'
check "each reconnect recovered its session" has "$kept" '"unrecovered":0'
check "in-place restarts: no client saw a disconnect" no_drops "$kept"
check "systemd saw no failure" \
  bash -c "[[ \$(timeout 5 nsenter -t $P -a systemctl show -P Result realtime.service) == success ]]"

# ---------------------------------------------------------------- restart: the fd store
rm -f "$flag"
rm -f "$W/keep2.ready"
in_net node tests/systemd/client.mjs keep 8001 "$flag" "$W/keep2.ready" >"$W/keep2.out" 2>&1 &
KEEP=$!
wait_for 30 test -e "$W/keep2.ready" || true
before=$(journal | grep -c 'took over the sessions of the previous process' || true)
for _ in 1 2 3; do
  in_ct systemctl restart realtime.service || echo "systemctl restart failed"
  sleep 0.5
done
touch "$flag"
wait "$KEEP" || true
kept=$(cat "$W/keep2.out")
echo "three systemctl restarts: $kept"
after=$(journal | grep -c 'took over the sessions of the previous process' || true)
check "each restart took the sessions over from the fd store ($before -> $after)" test "$after" -ge $((before + 3))
check "restarts: every message once and in order, on both tabs" has "$kept" '"inOrder":true,"churn"'
check "restarts: no membership event" has "$kept" '"churn":0'
check "restarts: each reconnect recovered its session" has "$kept" '"unrecovered":0'
check "restarts: the WebSocket client saw no disconnect (its connection crossed)" has "$kept" '"wsDisconnects":0'
check "restarts: the polling client saw no disconnect (its session kept its sid)" has "$kept" '"pollingDisconnects":0'
log=$(journal)
resumed=$(grep 'took over the sessions' <<<"$log" | tail -n 3 | grep -c 'live=1' || true)
check "restarts: each start resumed the WebSocket on its stored socket ($resumed of 3)" test "$resumed" = 3
check "restarts: no stored connection left over or refused (no stale descriptor)" \
  bash -c '[[ $1 != *"their clients reconnect"* && $1 != *"not resumed"* ]]' _ "$log"
nstore=$(in_ct systemctl show -P NFileDescriptorStore realtime.service || true)
if [[ -n $nstore ]]; then check "the store holds nothing but while stopping ($nstore)" test "$nstore" = 0; fi
ready=$W/stop-ready
rm -f "$ready"
in_net node tests/systemd/client.mjs stop 8001 "$ready" >"$W/stop.out" 2>&1 &
STOPPED=$!
wait_for 15 test -e "$ready" || true
in_ct systemctl stop realtime.service
wait "$STOPPED" || true
# As before: the server closes each WebSocket with 1001 (no Socket.IO DISCONNECT, so that
# stock clients reconnect once it is back).
check "a plain stop still closes the client's connection, going away ($(cat "$W/stop.out"))" \
  grep -q '"reason":"transport close","code":1001' "$W/stop.out"
in_net curl -fsS -m 5 -o /dev/null http://127.0.0.1:8001/healthz || true
wait_for 10 in_ct systemctl is-active --quiet realtime.service || true
last=$(journal | grep -c 'took over the sessions of the previous process' || true)
check "a stop empties the store: the next start takes nothing over" test "$last" = "$after"

# ---------------------------------------------------------------- watchdog
mkdir -p "$R/etc/systemd/system/realtime.service.d"
cat >"$R/etc/systemd/system/realtime.service.d/watchdog-test.conf" <<'EOF'
[Service]
Environment=REALTIME_TEST_HOOKS=1
WatchdogSec=2s
EOF
in_ct systemctl daemon-reload
in_ct systemctl restart realtime.service
pid=$(main_pid)
wait_for 5 bash -c "timeout 5 nsenter -t $P -a journalctl --no-pager -o cat -u realtime.service | grep -q 'SIGUSR2 makes the hub hang'" || true
in_ct kill -USR2 "$pid"
check "a stuck hub is killed by the watchdog and restarted" \
  wait_for 15 bash -c "p=\$(timeout 5 nsenter -t $P -a systemctl show -P MainPID realtime.service); [[ \$p != 0 && \$p != $pid ]]"
check "systemd logged the watchdog timeout" \
  bash -c "timeout 10 nsenter -t $P -a journalctl --no-pager -u realtime.service | grep -qi 'watchdog timeout'"
rm -rf "$R/etc/systemd/system/realtime.service.d"
in_ct systemctl daemon-reload

# ---------------------------------------------------------------- stop
wait_for 10 in_ct systemctl is-active --quiet realtime.service || true
in_ct systemctl stop realtime.service
check "stop ends the service cleanly (not failed)" \
  bash -c "[[ \$(timeout 5 nsenter -t $P -a systemctl show -P Result realtime.service) == success ]]"
check "the daemon logged its clean stop" \
  bash -c "timeout 10 nsenter -t $P -a journalctl --no-pager -o cat -u realtime.service | grep -Eqx ' *INFO stopped'"

echo
echo "container: $PASS passed, $FAIL failed"
if ((FAIL)); then
  echo "--- journal of realtime.service ---"
  journal | tail -n 60 || true
  exit 1
fi
