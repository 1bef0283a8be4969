#!/usr/bin/env bash
# The packages come out the same whichever way they are built: packaging/build with
# CARGO_TARGET_DIR set to another directory, and a plain `cargo deb --no-build` / `cargo
# generate-rpm` (what Rust packagers type first) in the default target directory and in
# another one holding nothing but the release binary. "The same": the same files with the
# same modes, owners and bytes, the same control fields, configuration files and scripts.
#
#   tests/packaging/packers.sh [DEB RPM]   (default: the newest in target/debian and
#                                           target/generate-rpm, from packaging/build)
#
# Needs the release build packaging/build made, cargo-deb, cargo-generate-rpm, dpkg-deb and
# rpm. No new build: target/release is copied whole (mtimes kept, so cargo finds it up to
# date) into a temporary directory, removed at the end. Prints "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

DEB=${1:-$(ls -1t "$TARGET"/debian/realtime_*.deb 2>/dev/null | head -n1 || true)}
RPM=${2:-$(ls -1t "$TARGET"/generate-rpm/realtime-*.rpm 2>/dev/null | head -n1 || true)}
[[ -f $DEB && -f $RPM ]] || { echo "no packages: run packaging/build deb and packaging/build rpm" >&2; exit 1; }
[[ -x $TARGET/release/realtime ]] || { echo "no release build: run packaging/build deb" >&2; exit 1; }
for tool in dpkg-deb rpm cargo-deb cargo-generate-rpm; do
  command -v "$tool" >/dev/null || { echo "missing $tool (packaging/build and tests/run install it)" >&2; exit 1; }
done
echo "deb: $DEB"
echo "rpm: $RPM"

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
# same NAME A B: two texts are equal (a diff is shown when not).
same() {
  if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1"; diff <(echo "$2") <(echo "$3") | sed 's/^/    /' || true; fi
}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# What a .deb holds, without dates: control fields, the control members' digests, and per
# file its mode, owner, size, digest and path.
deb_text() {
  local d
  d=$(mktemp -d -p "$W")
  dpkg-deb -x "$1" "$d/data" && dpkg-deb -e "$1" "$d/control"
  dpkg-deb -f "$1"
  (cd "$d/control" && sha256sum -- * | sort -k2)
  dpkg-deb -c "$1" | awk '{ print $1, $2, $3, $6 }' | sort -k4 | while read -r mode owner size path; do
    sum=-
    [[ $mode == -* ]] && sum=$(sha256sum <"$d/data/$path" | cut -d' ' -f1)
    echo "$mode $owner $size $sum $path"
  done
}
# What an .rpm holds, without dates or build host: its header but those, per file its mode,
# owner, flags (config, doc), size, digest and path, its scriptlets and requirements.
rpm_text() {
  rpm -qip "$1" | grep -Ev '^(Build Date|Build Host|Install Date|Signature|Size) *:'
  rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILESIZES} %{FILEDIGESTS} %{FILENAMES}\n]' "$1"
  rpm -qp --scripts "$1"
  rpm -qp --requires "$1"
}
# The assets are files of the checkout, but the binary: `target/release/` is the one prefix
# both packers resolve to the real target directory; any other target/ path is read under
# the checkout, where a build with CARGO_TARGET_DIR set never wrote it.
stray=$(grep -nE '"target/' Cargo.toml | grep -vF '"target/release/realtime"' || true)
same "the package assets under target/ are target/release/realtime alone" "$stray" ""

want_deb=$(deb_text "$DEB")
want_rpm=$(rpm_text "$RPM")

# packaging/build with CARGO_TARGET_DIR elsewhere: it finds nothing of target/ but what the
# copy of target/release holds (no packaging/ beside it).
other=$W/target
mkdir -p "$other"
cp -a "$TARGET/release" "$other/release"
if CARGO_TARGET_DIR=$other packaging/build deb >"$W/build-deb.log" 2>&1 &&
   CARGO_TARGET_DIR=$other packaging/build rpm >"$W/build-rpm.log" 2>&1; then
  ok "packaging/build deb and rpm with CARGO_TARGET_DIR set"
  same "packaging/build deb, CARGO_TARGET_DIR set: the same .deb" \
    "$want_deb" "$(deb_text "$(ls -1 "$other"/debian/realtime_*.deb)")"
  same "packaging/build rpm, CARGO_TARGET_DIR set: the same .rpm" \
    "$want_rpm" "$(rpm_text "$(ls -1 "$other"/generate-rpm/realtime-*.rpm)")"
else
  not_ok "packaging/build deb and rpm with CARGO_TARGET_DIR set"
  sed 's/^/    /' "$W"/build-*.log
fi
rm -rf "$other"

# The packers as typed, with no output option: they write into the target directory
# (cargo-deb first deletes the .debs already there), so the packages compared against are
# kept aside and put back afterwards.
cp -p "$DEB" "$W/reference.deb"
cp -p "$RPM" "$W/reference.rpm"
restore() { cp -p "$W/reference.deb" "$DEB"; cp -p "$W/reference.rpm" "$RPM"; }
trap 'restore; rm -rf "$W"' EXIT
# packers TARGET-DIR NAME: cargo deb --no-build and cargo generate-rpm, then their packages
# against the reference ones.
packers() {
  local dir=$1 name=$2
  if cargo deb --no-build --locked >"$W/deb.log" 2>&1 && cargo generate-rpm >"$W/rpm.log" 2>&1; then
    same "plain cargo deb --no-build, $name: the same .deb" \
      "$want_deb" "$(deb_text "$(ls -1t "$dir"/debian/realtime_*.deb | head -n1)")"
    same "plain cargo generate-rpm, $name: the same .rpm" \
      "$want_rpm" "$(rpm_text "$(ls -1t "$dir"/generate-rpm/realtime-*.rpm | head -n1)")"
  else
    not_ok "plain cargo deb --no-build and cargo generate-rpm, $name"
    sed 's/^/    /' "$W"/deb.log "$W"/rpm.log
  fi
}
# In the default target directory (or the CARGO_TARGET_DIR this runs with).
packers "$TARGET" "the target directory"
restore
# In a target directory holding the release binary alone.
bare=$W/bare
mkdir -p "$bare/release"
cp "$TARGET/release/realtime" "$bare/release/"
CARGO_TARGET_DIR=$bare packers "$bare" "a bare CARGO_TARGET_DIR"

echo
echo "packers: $PASS passed, $FAIL failed"
((FAIL == 0))
