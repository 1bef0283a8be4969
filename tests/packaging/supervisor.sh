#!/usr/bin/env bash
# The supervisord way, as a tarball user runs it: packaging/supervisor/ copied into a
# temporary tree beside bin/realtime and etc/realtime.conf; its start brings the server up
# (a stock Socket.IO client round trip works), status says RUNNING, restart re-executes
# the server in place (same PID, sessions handed over; five of them under the hand-over
# scenario of tests/lib/scenario.sh: no disconnect, nothing lost, no churn), stop ends it
# and supervisord. As root (CI), in a network namespace of its own,
# the server also binds 843 and drops to user nobody (checked in /proc/PID/status).
#
#   tests/packaging/supervisor.sh      (needs supervisord, node and tests/node_modules)
#
# Prints "supervisord: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${REALTIME_BIN:-$REPO/target/debug/realtime}
# The scripts take these as overrides; this test wants the tarball's own choices.
unset REALTIME_BIN REALTIME_CONFIG REALTIME_RUN_DIR REALTIME_LOG_DIR REALTIME_MANAGER

for tool in supervisord supervisorctl node curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tests/run installs it)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
[[ -d tests/node_modules/socket.io-client ]] || { echo "run npm ci --prefix tests first" >&2; exit 1; }

ROOT_RUN=0
if [[ $(id -u) -eq 0 ]]; then
  ROOT_RUN=1
  # Port 843 and the HTTP port in a network namespace of this test alone.
  if [[ -z ${REALTIME_TEST_NETNS:-} ]]; then
    exec env REALTIME_TEST_NETNS=1 unshare --net -- "$0" "$@"
  fi
  ip link set lo up
fi

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
has() { [[ $1 == *"$2"* ]]; }

# shellcheck source=../lib/scenario.sh
. tests/lib/scenario.sh

T=$(mktemp -d /tmp/realtime-supervisor.XXXXXX)
W=$T
# The server, once it dropped to nobody, must still reach its binary to re-execute it.
chmod 0755 "$T"
cleanup() {
  set +e
  scenario_kill
  local pid
  pid=$(cat "$T/run/supervisord.pid" 2>/dev/null)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    pkill -KILL -P "$pid"
    kill -KILL "$pid"
  fi
  rm -rf "$T"
}
trap cleanup EXIT

# ---------------------------------------------------------------- a tarball's tree
mkdir -p "$T/packaging" "$T/bin" "$T/etc"
cp -r packaging/supervisor "$T/packaging/"
install -m 0755 "$BIN" "$T/bin/realtime"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if ((ROOT_RUN)); then
  FLASH=843
  USER_LINE="user = nobody"
else
  FLASH=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  USER_LINE="#user = (not root: no change)"
fi
HOOK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/etc/realtime.conf" <<EOF
[Server]
bind = 127.0.0.1:$PORT
$USER_LINE

[Flash]
port = $FLASH

$(scenario_monitor_conf "$HOOK_PORT")
EOF
CMD=$T/packaging/supervisor
URL=http://127.0.0.1:$PORT

# program_pid: the pid supervisorctl status shows ("realtime RUNNING pid 123, uptime ...").
program_pid() { "$CMD/status" 2>/dev/null | sed -n 's/.*RUNNING *pid \([0-9]*\),.*/\1/p'; }
roundtrip() { node tests/packaging/client.mjs roundtrip "$URL" 2>&1 || true; }
flash() {
  timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf "<policy-file-request/>\0" >&3; cat <&3' _ "$1" 2>/dev/null | tr '\0' '@' || true
}

# ---------------------------------------------------------------- start
out=$("$CMD/start" 2>&1) && rc=0 || rc=$?
echo "$out" | sed 's/^/    /'
check "start exits 0" test "$rc" = 0
check "start waits for RUNNING" has "$out" "RUNNING"
out=$("$CMD/status" 2>&1) && rc=0 || rc=$?
check "status says RUNNING and exits 0 ($out)" bash -c '[[ $1 == 0 && $2 == *RUNNING* ]]' _ "$rc" "$out"
pid=$(program_pid)
check "the program runs the tree's bin/realtime" \
  bash -c '[[ $(readlink "/proc/$1/exe") == "$2" ]]' _ "$pid" "$T/bin/realtime"
out=$(roundtrip)
check "a stock Socket.IO client round trip works ($out)" has "$out" '"ok":true'
check "the Flash policy port answers" has "$(flash "$FLASH")" "</cross-domain-policy>"
check "the server's log goes to log/realtime.log" \
  bash -c 'grep -q "listening on" "$1"' _ "$T/log/realtime.log"
check "supervisord's socket and pid file are in run/" \
  test -S "$T/run/supervisord.sock" -a -f "$T/run/supervisord.pid"

if ((ROOT_RUN)); then
  nobody_uid=$(id -u nobody) nobody_gid=$(id -g nobody)
  status=$(cat "/proc/$pid/status")
  check "started as root, the server runs as nobody" \
    bash -c 'grep -Eq "^Uid:\s+$2\s+$2\s+$2\s+$2$" <<<"$1"' _ "$status" "$nobody_uid"
  check "with nobody's group and no supplementary groups" \
    bash -c 'grep -Eq "^Gid:\s+$2\s+$2\s+$2\s+$2$" <<<"$1" && grep -Eq "^Groups:\s*$" <<<"$1"' _ "$status" "$nobody_gid"
  check "it bound 843 before dropping root" \
    bash -c 'grep -q "dropped root privileges" "$1"' _ "$T/log/realtime.log"
fi

# ---------------------------------------------------------------- restart
out=$("$CMD/restart" 2>&1) && rc=0 || rc=$?
echo "$out" | sed 's/^/    /'
check "restart exits 0 and is RUNNING" bash -c '[[ $1 == 0 && $2 == *RUNNING* ]]' _ "$rc" "$out"
pid2=$(program_pid)
check "restart kept the process ($pid -> $pid2)" test "$pid" = "$pid2"
# The new binary logs this once it has taken the sessions in, before it serves.
took_over() { grep -q "took over the sessions of the previous process" "$T/log/realtime.log"; }
for _ in $(seq 100); do took_over && break; sleep 0.1; done
check "the server re-executed itself and took the sessions over" took_over
check "supervisord saw no exit" \
  bash -c '! grep -q "exited: realtime\|stopped: realtime" "$1"' _ "$T/log/supervisord.log"
out=$(roundtrip)
check "the round trip works after the restart" has "$out" '"ok":true'

# A new binary that cannot be executed (a broken upgrade): the running one is executed
# again with the same state, and serves on.
mv "$T/bin/realtime" "$T/bin/realtime.good"
printf 'not a program\n' >"$T/bin/realtime"
chmod 0755 "$T/bin/realtime"
"$CMD/restart" >/dev/null 2>&1 || true
again() { [[ $(grep -c "took over the sessions of the previous process" "$T/log/realtime.log") -ge 2 ]]; }
for _ in $(seq 100); do again && break; sleep 0.1; done
check "a binary that cannot be executed: the running one is executed again" \
  bash -c 'grep -q "executing this binary again" "$1"' _ "$T/log/realtime.log"
check "and takes the sessions over, same process ($(program_pid))" \
  bash -c '[[ $1 == "$2" ]] && grep -c "took over the sessions" "$3" | grep -qx 2' _ "$(program_pid)" "$pid" "$T/log/realtime.log"
mv "$T/bin/realtime.good" "$T/bin/realtime"
out=$(roundtrip)
check "the round trip works after it" has "$out" '"ok":true'

# ---------------------------------------------------------------- the hand-over scenario
# 1,000 WebSocket and 100 polling clients, publishers through the API and a client, the
# monitor posting to the scenario: five restarts in a row, nothing may show.
took=$(grep -c "took over the sessions of the previous process" "$T/log/realtime.log" || true)
if scenario_start "$URL" "$HOOK_PORT"; then
  for i in 1 2 3 4 5; do
    "$CMD/restart" >/dev/null 2>&1 || echo "    restart $i failed"
    took=$((took + 1))
    for _ in $(seq 300); do
      [[ $(grep -c "took over the sessions of the previous process" "$T/log/realtime.log") -ge $took ]] && break
      sleep 0.1
    done
    sleep 2
  done
  scenario_stop
else
  REPORT=''
fi
check "five realtimectl restart under the scenario: same process ($(program_pid))" test "$(program_pid)" = "$pid"
scenario_checks "realtimectl restart x5"

# ---------------------------------------------------------------- stop
sv_pid=$(cat "$T/run/supervisord.pid")
out=$("$CMD/stop" 2>&1) && rc=0 || rc=$?
echo "$out" | sed 's/^/    /'
check "stop exits 0" test "$rc" = 0
check "stop ended the server and supervisord" \
  bash -c '! kill -0 "$1" 2>/dev/null && ! kill -0 "$2" 2>/dev/null' _ "$pid2" "$sv_pid"
check "the port is closed" bash -c '! curl -fsS -m 2 -o /dev/null "$1/healthz" 2>/dev/null' _ "$URL"
out=$("$CMD/status" 2>&1) && rc=0 || rc=$?
check "status then says STOPPED and exits 3 ($out)" bash -c '[[ $1 == 3 && $2 == *STOPPED* ]]' _ "$rc" "$out"
out=$("$CMD/stop" 2>&1) && rc=0 || rc=$?
check "stop when stopped is not an error ($out)" test "$rc" = 0

echo
echo "supervisord: $PASS passed, $FAIL failed"
if ((FAIL)); then
  echo "--- log/realtime.log ---"; tail -n 30 "$T/log/realtime.log" 2>/dev/null || true
  echo "--- log/supervisord.log ---"; tail -n 30 "$T/log/supervisord.log" 2>/dev/null || true
  exit 1
fi
