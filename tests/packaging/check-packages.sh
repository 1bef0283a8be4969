#!/usr/bin/env bash
# The .deb and the .rpm, read without installing them: the same files with the same modes
# and bytes (rpm -qp against dpkg-deb -c), the same configuration files (kept on upgrade),
# a stripped binary, a man page groff reads without a warning, the packaged configuration,
# and maintainer scripts / scriptlets that do the same things.
#
#   tests/packaging/check-packages.sh [DEB RPM]   (default: the newest in target/debian
#                                                  and target/generate-rpm)
#
# Needs dpkg-deb, rpm (Debian package rpm) and groff. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

DEB=${1:-$(ls -1t "$TARGET"/debian/realtime_*.deb 2>/dev/null | head -n1 || true)}
RPM=${2:-$(ls -1t "$TARGET"/generate-rpm/realtime-*.rpm 2>/dev/null | head -n1 || true)}
[[ -f $DEB && -f $RPM ]] || { echo "no packages: run packaging/build deb and packaging/build rpm" >&2; exit 1; }
for tool in dpkg-deb rpm groff readelf; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tests/run installs it)" >&2; exit 1; }
done
echo "deb: $DEB"
echo "rpm: $RPM"

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
# same NAME A B: two texts are equal (a diff is shown when not).
same() {
  if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1"; diff <(echo "$2") <(echo "$3") | sed 's/^/    /' || true; fi
}
has() { grep -qE -- "$2" <<<"$1"; }

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
dpkg-deb -x "$DEB" "$W/deb"
dpkg-deb -e "$DEB" "$W/control"

# ---------------------------------------------------------------- file lists
# dpkg-deb -c: "perms owner/group size date time ./path"; regular files only.
deb_files=$(dpkg-deb -c "$DEB" | awk '$1 ~ /^-/ { sub(/^\./, "", $6); print $1, $6 }' | sort -k2)
rpm_files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" | sort -k2)
# What only one of them has, by design: Debian's copyright file; the RPM preset.
same "the .rpm holds the .deb's files with the same modes (but copyright, preset)" \
  "$(grep -v ' /usr/share/doc/realtime/copyright$' <<<"$deb_files")" \
  "$(grep -v ' /usr/lib/systemd/system-preset/50-realtime.preset$' <<<"$rpm_files")"
check "the .rpm has the preset enabling both sockets" \
  has "$rpm_files" ' /usr/lib/systemd/system-preset/50-realtime.preset$'

# Every file of the .rpm has the bytes of the .deb's (rpm's digests are sha256).
[[ $(rpm -qp --qf '%{FILEDIGESTALGO}' "$RPM") == 8 ]] || not_ok "rpm digests are not sha256"
mismatch=$(rpm -qp --qf '[%{FILEDIGESTS} %{FILENAMES}\n]' "$RPM" | while read -r sum path; do
  [[ -f $W/deb$path ]] || continue
  [[ $(sha256sum <"$W/deb$path" | cut -d' ' -f1) == "$sum" ]] || echo "$path"
done)
same "every file of both packages has the same bytes" "$mismatch" ""

for path in /usr/bin/realtime /usr/share/man/man8/realtime.8.gz /etc/realtime/realtime.conf \
  /etc/realtime/license.txt /usr/lib/systemd/system/realtime.service \
  /usr/lib/systemd/system/realtime.socket /usr/lib/systemd/system/realtime-flash.socket \
  /usr/lib/sysusers.d/realtime.conf /usr/share/realtime/www/index.html \
  /usr/share/realtime/www/realtime.js /usr/share/realtime/grafana-dashboard.json \
  /usr/share/doc/realtime/configuration.md /usr/share/doc/realtime/operating.md \
  /usr/share/doc/realtime/examples/supervisor/supervisord.conf \
  /usr/share/doc/realtime/examples/supervisor/realtime-program.conf; do
  check "the packages install $path" has "$deb_files" " $path\$"
done
for cmd in start stop status restart realtimectl; do
  check "the supervisor command $cmd is executable" \
    has "$deb_files" "^-rwxr-xr-x /usr/share/doc/realtime/examples/supervisor/$cmd\$"
done
for unit in realtime.service realtime.socket realtime-flash.socket; do
  check "$unit is systemd/$unit" cmp -s "systemd/$unit" "$W/deb/usr/lib/systemd/system/$unit"
done
check "license.txt is etc/license.txt" cmp -s etc/license.txt "$W/deb/etc/realtime/license.txt"
check "the Grafana dashboard is packaging/grafana-dashboard.json" \
  cmp -s packaging/grafana-dashboard.json "$W/deb/usr/share/realtime/grafana-dashboard.json"
check "the demo and bundle are js-client/www's" \
  bash -c 'cmp -s js-client/www/index.html "$1/index.html" && cmp -s js-client/www/realtime.js "$1/realtime.js"' \
  _ "$W/deb/usr/share/realtime/www"

# ---------------------------------------------------------------- configuration files
deb_conf=$(sort "$W/control/conffiles")
rpm_conf=$(rpm -qp --configfiles "$RPM" | sort)
same "the same configuration files" "$deb_conf" "$rpm_conf"
same "they are realtime.conf and license.txt" "$deb_conf" "$(printf '%s\n' /etc/realtime/license.txt /etc/realtime/realtime.conf)"
rpm_flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" | grep ' /etc/')
same "rpm: config(noreplace), root:realtime, 0640 (an upgrade keeps a changed file)" "$rpm_flags" \
  "$(printf 'cn root:realtime -rw-r----- %s\n' /etc/realtime/license.txt /etc/realtime/realtime.conf)"
check "deb: 0640 (postinst gives them group realtime)" \
  bash -c '[[ $(grep -c "^-rw-r----- /etc/realtime/" <<<"$1") == 2 ]]' _ "$deb_files"

conf=$W/deb/etc/realtime/realtime.conf
for key in "user = realtime" "www = /usr/share/realtime/www"; do
  check "the packaged configuration sets $key" grep -qxF "$key" "$conf"
done
check "the packaged configuration is valid (realtime check-config)" \
  bash -c '"$1" check-config "$2" >/dev/null' _ "$W/deb/usr/bin/realtime" "$conf"
check "the packaged configuration is the sample's other lines" \
  bash -c 'diff <(grep -Ev "^(#|user = |www = )" "$1") <(grep -Ev "^(#|user = |www = )" etc/realtime.conf)' _ "$conf"

# ---------------------------------------------------------------- binary and man page
sections=$(readelf -S -W "$W/deb/usr/bin/realtime")
check "the binary is stripped (no .symtab, no .debug_*)" \
  bash -c '! grep -qE "\.symtab|\.debug_" <<<"$1"' _ "$sections"
page=$(gzip -dc "$W/deb/usr/share/man/man8/realtime.8.gz")
check "the man page is realtime(8)" bash -c '[[ $1 == *".TH realtime 8 "* ]]' _ "$page"
check "the man page is the binary's own (realtime man)" \
  bash -c '[[ $("$1" man) == "$2" ]]' _ "$W/deb/usr/bin/realtime" "$page"
warnings=$(groff -man -Tutf8 -ww -z <<<"$page" 2>&1 || echo "groff failed")
same "groff reads the man page without a warning" "$warnings" ""

# ---------------------------------------------------------------- scripts
for s in postinst prerm postrm; do
  check "deb $s is valid sh" sh -n "$W/control/$s"
done
scripts=$(rpm -qp --scripts "$RPM")
for s in preinstall postinstall preuninstall postuninstall; do
  body=$(awk -v want="$s scriptlet" 'index($0, want) == 1 { on = 1; next } / scriptlet( \(using [^)]*\))?:$/ { on = 0 } on' <<<"$scripts")
  printf '%s\n' "$body" >"$W/$s.sh"
  check "rpm $s is valid sh" bash -c '[[ -s $1 ]] && sh -n "$1"' _ "$W/$s.sh"
done
postinst=$(<"$W/control/postinst") prerm=$(<"$W/control/prerm") postrm=$(<"$W/control/postrm")
pre=$(<"$W/preinstall.sh") post=$(<"$W/postinstall.sh") preun=$(<"$W/preuninstall.sh") postun=$(<"$W/postuninstall.sh")

# The user: sysusers.d applied on install.
user_line=$(grep -v '^#' packaging/realtime.sysusers)
check "deb postinst creates the user (systemd-sysusers realtime.conf)" has "$postinst" 'systemd-sysusers .*realtime\.conf'
check "rpm %pre creates the user before unpacking, from the same line" \
  bash -c '[[ $1 == *"systemd-sysusers --replace=/usr/lib/sysusers.d/realtime.conf -"* ]] && grep -qxF -- "$2" <<<"$1"' _ "$pre" "$user_line"
# Enabled and started on install.
for unit in realtime.socket realtime-flash.socket; do
  check "deb postinst enables $unit" has "$postinst" "deb-systemd-helper enable $unit"
done
check "rpm %post enables both sockets by preset" has "$post" 'preset realtime\.socket realtime-flash\.socket'
check "deb postinst starts both sockets" has "$postinst" 'start realtime\.socket realtime-flash\.socket'
check "rpm %post starts both sockets" has "$post" 'start realtime\.socket realtime-flash\.socket'
# An upgrade restarts the service alone.
check "deb postinst try-restarts the service on an upgrade" has "$postinst" 'try-restart realtime\.service'
check "rpm %postun try-restarts the service on an upgrade" has "$postun" '"\$1" -ge 1'
check "rpm %postun try-restarts the service alone" has "$postun" 'try-restart realtime\.service'
check "no script restarts or stops a socket on an upgrade" \
  bash -c '! grep -Eq "(restart|reload-or-restart) [^|]*realtime[^ ]*\.socket" <<<"$1"' _ "$postinst$post$postun"
check "deb prerm stops the sockets and the service only on remove" \
  has "$prerm" '"\$1" = remove'
check "deb prerm stops all three units" \
  bash -c 'grep "stop " <<<"$1" | grep -q realtime.socket && grep "stop " <<<"$1" | grep -q realtime-flash.socket && grep "stop " <<<"$1" | grep -q realtime.service' _ "$prerm"
check "rpm %preun disables and stops all three units on erase" \
  has "$preun" 'disable --now realtime\.socket realtime-flash\.socket realtime\.service'
check "deb postrm removes /etc/realtime on purge" has "$postrm" 'rm -rf /etc/realtime'
check "deb postrm forgets the units on purge" has "$postrm" 'deb-systemd-helper purge'

# ---------------------------------------------------------------- control
control=$(dpkg-deb -f "$DEB")
check "deb Depends on systemd | systemd-sysusers" has "$control" '^Depends: .*systemd \| systemd-sysusers'
check "rpm Requires systemd" has "$(rpm -qp --requires "$RPM")" '^systemd$'

echo
echo "packages: $PASS passed, $FAIL failed"
((FAIL == 0))
