# Sourced by the tests that need real systemd as PID 1 (SYSTEMD.md's recipe): a throw-away
# overlay of this machine's root, booted with systemd-nspawn, and the test's ok/check
# counters. The caller sets W (a fresh temporary folder) and calls ct_stop from its EXIT trap.

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }

NS='' P=''
# Seconds a command inside the container may take (in_ct).
CT_TIMEOUT=${CT_TIMEOUT:-30}

# ct_prepare: a tmpfs at $W with an overlay of / at $W/root; sets R.
ct_prepare() {
  mount -t tmpfs -o size=2G tmpfs "$W"
  mkdir -p "$W"/{upper,work,root}
  mount -t overlay overlay -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$W/root"
  R=$W/root
  rm -f "$R/usr/sbin/policy-rc.d"   # this image blocks service starts from package scripts
}

# ct_boot MACHINE: boots $R, waits until systemd is up; sets NS and P.
ct_boot() {
  systemd-nspawn --register=no --keep-unit -D "$R" --private-network -M "$1" \
    --console=pipe -b >"$W/nspawn.log" 2>&1 &
  NS=$!
  for _ in $(seq 100); do P=$(pgrep -P "$NS" -x systemd) && break; sleep 0.1; done
  [[ -n $P ]] || { cat "$W/nspawn.log"; echo "container did not boot" >&2; exit 1; }
  # The bus socket appears a moment after PID 1 does: until then systemctl answers nothing,
  # "offline" or "unknown" (it could not ask). Retry those for 120 s; any other answer is
  # the manager's own, after --wait has seen the boot end.
  local state='' seen=() end=$((SECONDS + 120))
  while ((SECONDS < end)); do
    state=$(timeout 60 nsenter -t "$P" -a systemctl is-system-running --wait 2>/dev/null || true)
    seen+=("${state:-(nothing)}")
    case $state in ''|offline|unknown|initializing|starting) sleep 0.2 ;; *) break ;; esac
  done
  echo "container: $state"
  [[ $state == running || $state == degraded ]] || {
    echo "boot failed: systemctl is-system-running said, in order: $(printf '%s\n' "${seen[@]}" | uniq -c | xargs)" >&2
    exit 1
  }
}

in_ct() { timeout "$CT_TIMEOUT" nsenter -t "$P" -a "$@"; }  # a command inside the container
in_net() { timeout 60 nsenter -t "$P" -n "$@"; }            # a host command in its network

# wait_for SECONDS CMD...: retry until CMD succeeds.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.2; done
}

# ct_stop: powers the container off (killing it if it will not go) and unmounts.
ct_stop() {
  if [[ -n $NS ]] && kill -0 "$NS" 2>/dev/null; then
    kill -TERM "$NS" 2>/dev/null                 # nspawn asks the container's systemd to power off
    for _ in $(seq 100); do kill -0 "$NS" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NS" 2>/dev/null
    wait "$NS" 2>/dev/null
  fi
  mountpoint -q "$W/root" && umount "$W/root"
  mountpoint -q "$W" && umount "$W"
}
