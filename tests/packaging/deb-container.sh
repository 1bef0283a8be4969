#!/usr/bin/env bash
# The packages under real systemd (PID 1 in a throw-away container), the way a user gets
# them:
# - `apt-get install ./realtime_*.deb`: the realtime user exists, both sockets listen, a
#   stock Socket.IO client round trip works through them, the demo comes from
#   /usr/share/realtime/www, `journalctl -u realtime` shows the start, the supervisor
#   commands of the package drive systemctl;
# - an upgrade to a rebuilt package (revision 2) while a client publishes: no request is
#   refused or lost, the service alone is restarted (the sockets stay open), the sessions
#   of connected clients go on (systemd's fd store; a WebSocket's connection itself), the
#   administrator's configuration is kept;
# - `apt-get remove` stops everything; `apt-get purge` leaves no unit, no configuration
#   and no process;
# - then the .rpm (rpm -i / -U / -e with its real scriptlets; --nodeps, this is Debian):
#   it creates the user, opens both sockets, upgrades without refusing a request, and
#   erases cleanly;
# - for each package, the hand-over scenario (tests/lib/scenario.sh: 1,000 WebSocket and
#   100 polling clients, publishers, the monitor's webhooks) through five
#   `systemctl restart realtime` and the upgrade: no disconnect, nothing lost, no churn.
#
#   tests/packaging/deb-container.sh     (root; builds the packages with packaging/build)
#
# The container is an overlay of / on a tmpfs with its own network; everything is undone
# on exit. Prints "packages in systemd: N passed, M failed"; non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: the package container test needs root (CI runs as root)"
  exit 0
fi
for tool in systemd-nspawn nsenter node curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tests/run installs it)" >&2; exit 1; }
done
[[ -d tests/node_modules/socket.io-client ]] || { echo "run npm ci --prefix tests first" >&2; exit 1; }

# shellcheck source=../lib/container.sh
. tests/lib/container.sh
# shellcheck source=../lib/scenario.sh
. tests/lib/scenario.sh
CT_TIMEOUT=120
has() { [[ $1 == *"$2"* ]]; }

W=$(mktemp -d /tmp/realtime-pkgct.XXXXXX)
LOOP=''
cleanup() {
  set +e
  [[ -n $LOOP ]] && kill "$LOOP" 2>/dev/null && wait "$LOOP" 2>/dev/null
  scenario_kill
  ct_stop
  rm -rf "$W"
}
trap cleanup EXIT

ct_prepare

# ---------------------------------------------------------------- packages
# Revision 1 to install, revision 2 to upgrade to; the same release build, packed twice.
IN=$W/in
mkdir -p "$IN"
packaging/build deb --output "$IN/" >"$W/build.log" 2>&1 &&
  packaging/build deb --deb-revision 2 --output "$IN/" >>"$W/build.log" 2>&1 &&
  packaging/build rpm --output "$IN/" >>"$W/build.log" 2>&1 &&
  packaging/build rpm -s 'release = "2"' --output "$IN/" >>"$W/build.log" 2>&1 ||
  { cat "$W/build.log"; echo "packaging/build failed" >&2; exit 1; }
DEB1=$(cd "$IN" && ls realtime_*-1_*.deb) DEB2=$(cd "$IN" && ls realtime_*-2_*.deb)
RPM1=$(cd "$IN" && ls realtime-*-1.*.rpm) RPM2=$(cd "$IN" && ls realtime-*-2.*.rpm)
echo "packages: $DEB1 $DEB2 $RPM1 $RPM2"

# ---------------------------------------------------------------- the container's root
# Services this machine has enabled that have no business in the test.
for unit in supervisor.service postgresql.service postgresql@.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
mkdir -p "$R/root/in"
cp "$IN"/* "$R/root/in/"

# ---------------------------------------------------------------- boot
ct_boot realtime-pkg

apt_get() {
  in_ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold \
    -o APT::Sandbox::User=root "$@" >>"$W/apt.log" 2>&1
}
active() { in_ct systemctl --quiet is-active "$@"; }
main_pid() { in_ct systemctl show -P MainPID realtime.service; }
since() { in_ct systemctl show -P ActiveEnterTimestampMonotonic "$1"; }
healthz() { in_net curl -fsS -m 5 -o /dev/null http://127.0.0.1:8001/healthz; }
flash() {
  in_net timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/843; printf "<policy-file-request/>\0" >&3; cat <&3' 2>/dev/null |
    tr '\0' '@' || true
}
roundtrip() { in_net node tests/packaging/client.mjs roundtrip http://127.0.0.1:8001 2>&1 || true; }
no_process() { ! in_ct pgrep -x realtime >/dev/null; }
closed() { ! healthz 2>/dev/null && ! has "$(flash)" "cross-domain-policy"; }
# publish_during CMD...: a client publishes over HTTP, one request a connection, while CMD
# runs; prints its counts.
# Also keeps a WebSocket and a polling tab in a channel meanwhile (tests/systemd/client.mjs
# keep): what they got is in $W/keep.out.
publish_during() {
  local flag=$W/stop-publishing
  rm -f "$flag"
  in_net node tests/packaging/client.mjs publish 8001 "$flag" >"$W/publish.out" 2>&1 &
  LOOP=$!
  in_net node tests/systemd/client.mjs keep 8001 "$flag" >"$W/keep.out" 2>&1 &
  KEEP=$!
  sleep 1
  "$@" || echo "failed: $*" >>"$W/publish.out"
  sleep 1
  touch "$flag"
  wait "$LOOP" || true
  LOOP=
  wait "$KEEP" || true
  cat "$W/publish.out"
}
# The sessions of the keep client went on through the new binary: recovered, nothing lost;
# the WebSocket tab's connection itself crossed (the restart stored its socket) and the
# polling tab kept its Engine.IO session: neither saw a disconnect.
sessions_kept() {
  local kept
  kept=$(cat "$W/keep.out")
  echo "    kept sessions: $kept"
  [[ $kept == *'"inOrder":true,"churn"'* && $kept == *'"churn":0'* && $kept == *'"unrecovered":0'* &&
    $kept == *'"wsDisconnects":0'* && $kept == *'"pollingDisconnects":0'* ]]
}
# The hand-over scenario: the monitor posts to it (the package's configuration changed
# as an administrator would, then the service restarted to read it); it starts, the
# service is restarted five times, each once it serves again.
HOOK_PORT=9100
scenario_begin() {
  in_ct sed -i -e "s|^#url = .*/monitor\$|url = http://127.0.0.1:$HOOK_PORT/|" \
    -e 's|^events = subscribe, unsubscribe$|events = subscribe, unsubscribe, connect, disconnect|' \
    /etc/realtime/realtime.conf || echo "    could not set the monitor's url"
  SECTION_START=$(uptime_us) SECTION_FAIL=$FAIL
  in_ct systemctl restart realtime || echo "    systemctl restart failed"
  wait_for 30 healthz || true
  REPORT=''
  scenario_start http://127.0.0.1:8001 "$HOOK_PORT" timeout 1500 nsenter -t "$P" -n || return 0
  for i in 1 2 3 4 5; do
    in_ct systemctl restart realtime || { echo "    systemctl restart $i failed"; service_story "$SECTION_START"; }
    wait_for 60 healthz || echo "    no healthz 60 s after restart $i"
    sleep 2
  done
}
# scenario_end WHAT: the scenario stops and its report is checked; the configuration is
# the package's again (an rpm -e keeps a changed one as .rpmsave).
scenario_end() {
  [[ -n $SCENARIO ]] && scenario_stop
  scenario_checks "$1"
  ((FAIL == SECTION_FAIL)) || { echo "    the service since the section began:"; service_story "$SECTION_START"; }
  in_ct sed -i -e "s|^url = http://127.0.0.1:$HOOK_PORT/\$|#url = http://localhost:8080/api/realtime/monitor|" \
    -e 's|^events = subscribe, unsubscribe, connect, disconnect$|events = subscribe, unsubscribe|' \
    /etc/realtime/realtime.conf || echo "    could not restore the monitor's settings"
}
# Why the service failed, when it did: what systemd counted and the last 60 lines of the
# service's journal since SINCE (a monotonic timestamp, in µs).
service_story() {
  echo "    $(in_ct systemctl show -p NRestarts,Result,ExecMainStatus,ExecMainCode realtime.service | tr '\n' ' ')"
  in_ct journalctl --no-pager -o short-monotonic -u realtime.service |
    awk -v s="${1:-0}" '{ t = substr($0, 2, index($0, "]") - 2) * 1000000 } t >= s' |
    tail -n 60 | sed 's/^/    | /' || true
}
uptime_us() { in_ct cat /proc/uptime | awk '{ printf "%d", $1 * 1000000 }'; }
lost_nothing() { [[ $1 == *'"refused":0,"failed":0'* && $1 != *'"ok":0,'* && $1 != *failed:* ]]; }

check "before the install there is no realtime user" bash -c '! timeout 10 nsenter -t "$1" -a id realtime >/dev/null 2>&1' _ "$P"

# ---------------------------------------------------------------- install the .deb
inst=0
apt_get install "/root/in/$DEB1" && inst=1
check "apt-get install ./$DEB1" test "$inst" = 1
((inst)) || { tail -n 40 "$W/apt.log"; exit 1; }
passwd=$(in_ct getent passwd realtime || true)
check "the realtime user exists, a system user without a shell ($passwd)" \
  bash -c 'IFS=: read -r _ _ uid _ _ _ shell <<<"$1"; ((uid > 0 && uid < 1000)) && [[ $shell == */nologin ]]' _ "$passwd"
check "the configuration is root:realtime 0640" \
  bash -c '[[ $(timeout 10 nsenter -t "$1" -a stat -c "%U:%G %a" /etc/realtime/realtime.conf /etc/realtime/license.txt | sort -u) == "root:realtime 640" ]]' _ "$P"
check "both sockets are enabled" in_ct systemctl --quiet is-enabled realtime.socket realtime-flash.socket
check "both sockets are listening" active realtime.socket realtime-flash.socket
policy=$(flash)
check "port 843 answers the Flash policy request, NUL-terminated" \
  bash -c '[[ $1 == *"</cross-domain-policy>"* && $1 == *"@" ]]' _ "$policy"
check "HTTP answers on 8001" wait_for 10 healthz
out=$(roundtrip)
check "a stock Socket.IO client round trip works through the socket ($out)" has "$out" '"ok":true'
check "the service runs as user realtime" \
  bash -c '[[ $(timeout 10 nsenter -t "$1" -a ps -o user= -p "$2") == realtime ]]' _ "$P" "$(main_pid)"
in_ct sh -c 'echo "<!-- packaged demo -->" >>/usr/share/realtime/www/index.html'
check "the demo is served from /usr/share/realtime/www" \
  bash -c 'timeout 10 nsenter -t "$1" -n curl -fsS -m 5 http://127.0.0.1:8001/ | grep -q "packaged demo"' _ "$P"
journal=$(in_ct journalctl --no-pager -u realtime || true)
check "journalctl -u realtime shows the start" \
  bash -c '[[ $1 == *"Started realtime.service"* && $1 == *"configuration from /etc/realtime/realtime.conf"* ]]' _ "$journal"
check "man realtime finds realtime(8)" \
  bash -c '[[ $(timeout 10 nsenter -t "$1" -a man -w realtime) == /usr/share/man/man8/realtime.8.gz ]]' _ "$P"

# ---------------------------------------------------------------- the packaged supervisor commands
EX=/usr/share/doc/realtime/examples/supervisor
out=$(in_ct "$EX/status" 2>&1) && rc=0 || rc=$?
check "the packaged status command asks systemd: RUNNING, exit 0" \
  bash -c '[[ $1 == 0 && $2 == *"realtime: RUNNING"* && $2 == *realtime.socket* ]]' _ "$rc" "$out"
pid=$(main_pid)
out=$(in_ct "$EX/restart" 2>&1) && rc=0 || rc=$?
check "the packaged restart command restarts the service" \
  bash -c '[[ $1 == 0 && $3 != 0 && $3 != "$4" ]]' _ "$rc" "$out" "$(main_pid)" "$pid"
out=$(in_ct "$EX/stop" 2>&1) && rc=0 || rc=$?
check "the packaged stop command stops the service and both sockets" \
  bash -c '[[ $1 == 0 ]] && ! timeout 10 nsenter -t "$2" -a systemctl --quiet is-active realtime.service realtime.socket realtime-flash.socket' _ "$rc" "$P"
out=$(in_ct "$EX/status" 2>&1) && rc=0 || rc=$?
check "then status says STOPPED, exit 3" bash -c '[[ $1 == 3 && $2 == *STOPPED* ]]' _ "$rc" "$out"
out=$(in_ct "$EX/start" 2>&1) && rc=0 || rc=$?
check "the packaged start command starts them again" \
  bash -c '[[ $1 == 0 && $2 == *"realtime: RUNNING"* ]]' _ "$rc" "$out"
wait_for 10 healthz || true

# ---------------------------------------------------------------- upgrade while publishing
scenario_begin
in_ct sh -c 'printf "\n# changed by the administrator\n" >>/etc/realtime/realtime.conf'
pid=$(main_pid) http_since=$(since realtime.socket) flash_since=$(since realtime-flash.socket)
counts=$(publish_during apt_get install "/root/in/$DEB2")
echo "publishes during the upgrade: $counts"
check "the upgrade to $DEB2 succeeded" \
  bash -c '[[ $(timeout 10 nsenter -t "$1" -a dpkg-query -W -f "\${Version}" realtime) == *-2 ]]' _ "$P"
check "a client publishing during the upgrade lost no request" lost_nothing "$counts"
check "the upgrade kept the sessions: every message once, in order, recovered, no churn, no WebSocket disconnect" sessions_kept
check "the upgrade restarted the service" \
  bash -c '[[ $1 != 0 && $1 != "$2" ]]' _ "$(main_pid)" "$pid"
check "the upgrade left both sockets open (not restarted)" \
  bash -c '[[ $1 == "$2" && $3 == "$4" ]]' _ "$(since realtime.socket)" "$http_since" "$(since realtime-flash.socket)" "$flash_since"
check "the upgrade kept the administrator's configuration" \
  in_ct grep -q "changed by the administrator" /etc/realtime/realtime.conf
out=$(roundtrip)
check "the round trip works after the upgrade" has "$out" '"ok":true'
scenario_end "deb: five systemctl restart, then the upgrade to $DEB2"

# ---------------------------------------------------------------- remove, purge
apt_get remove realtime || true
check "apt-get remove stops the service and both sockets" \
  bash -c '! timeout 10 nsenter -t "$1" -a systemctl --quiet is-active realtime.service realtime.socket realtime-flash.socket' _ "$P"
check "after remove, no realtime process runs" no_process
check "after remove, both ports are closed" closed
check "remove keeps the configuration" in_ct test -f /etc/realtime/realtime.conf
apt_get purge realtime || true
check "apt-get purge removes the package" \
  bash -c '! timeout 10 nsenter -t "$1" -a dpkg-query -W -f "\${Status}" realtime 2>/dev/null | grep -q installed' _ "$P"
check "purge leaves no /etc/realtime" bash -c '! timeout 10 nsenter -t "$1" -a test -e /etc/realtime' _ "$P"
left=$(in_ct sh -c 'ls -d /usr/lib/systemd/system/realtime* /etc/systemd/system/realtime* /etc/systemd/system/*/realtime* /usr/bin/realtime /usr/share/realtime 2>/dev/null' || true)
check "purge leaves no unit, symlink or file ($left)" test -z "$left"
units=$(in_ct systemctl list-unit-files --no-legend 'realtime*' || true)
check "systemd knows no realtime unit ($units)" test -z "$units"
check "after purge, no realtime process runs" no_process

# ---------------------------------------------------------------- the .rpm, with its scriptlets
# The user stays after a purge (Debian keeps system users): remove it so %pre must create it.
in_ct userdel realtime >/dev/null 2>&1 || true
rpm_ok=0
in_ct rpm -i --nodeps "/root/in/$RPM1" >>"$W/rpm.log" 2>&1 && rpm_ok=1
check "rpm -i $RPM1" test "$rpm_ok" = 1
check "rpm %pre created the realtime user" in_ct id realtime
check "rpm: the configuration is root:realtime 0640" \
  bash -c '[[ $(timeout 10 nsenter -t "$1" -a stat -c "%U:%G %a" /etc/realtime/realtime.conf) == "root:realtime 640" ]]' _ "$P"
check "rpm %post enabled both sockets" in_ct systemctl --quiet is-enabled realtime.socket realtime-flash.socket
check "rpm %post opened both sockets" active realtime.socket realtime-flash.socket
out=$(roundtrip)
check "rpm: the round trip works" has "$out" '"ok":true'
scenario_begin
pid=$(main_pid) http_since=$(since realtime.socket)
counts=$(publish_during in_ct rpm -U --nodeps "/root/in/$RPM2")
echo "publishes during rpm -U: $counts"
check "rpm -U to $RPM2 lost no request" lost_nothing "$counts"
check "rpm -U kept the sessions: every message once, in order, recovered, no churn, no WebSocket disconnect" sessions_kept
check "rpm -U restarted the service, not the sockets" \
  bash -c '[[ $1 != 0 && $1 != "$2" && $3 == "$4" ]]' _ "$(main_pid)" "$pid" "$(since realtime.socket)" "$http_since"
scenario_end "rpm: five systemctl restart, then rpm -U to $RPM2"
rpm_ok=0
in_ct rpm -e realtime >>"$W/rpm.log" 2>&1 && rpm_ok=1
check "rpm -e realtime" test "$rpm_ok" = 1
check "after rpm -e, no realtime process runs" no_process
check "after rpm -e, both ports are closed" closed
left=$(in_ct sh -c 'ls -d /usr/lib/systemd/system/realtime* /etc/systemd/system/*/realtime* /etc/realtime /usr/share/realtime 2>/dev/null' || true)
check "rpm -e leaves no unit, symlink or configuration ($left)" test -z "$left"

echo
echo "packages in systemd: $PASS passed, $FAIL failed"
if ((FAIL)); then
  echo "--- apt ---"; tail -n 30 "$W/apt.log" 2>/dev/null || true
  echo "--- rpm ---"; tail -n 30 "$W/rpm.log" 2>/dev/null || true
  echo "--- journal of realtime ---"
  in_ct journalctl --no-pager -o cat -u realtime.service -u realtime.socket -u realtime-flash.socket | tail -n 40 || true
  exit 1
fi
