#!/usr/bin/env bash
# Installs berth on this machine as a service, from this source tree:
#   <libdir>  (default /usr/local/lib/berth)   compiled berth, native addon, production node_modules
#   <bindir>/berthd (default /usr/local/bin)   the launcher
#   <unitdir>/berthd.service (default /etc/systemd/system), enabled when systemd manages this machine
#   <sysconfdir>/berth/berth.toml and <sysconfdir>/crictl.yaml, each only when absent
#   <cachedir> (default /var/cache/berth)       named by the launcher: berthd writes V8's code cache of its
#                                               bundle there after its first start (regenerated when removed),
#                                               and each start from the startup snapshot leaves a pending file
#                                               there until berthd's code runs
# Idempotent: running it again replaces berth's files and keeps the configuration.
# DESTDIR (environment) stages everything under another root, as packagers do; the
# installed files still name the final paths.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
  cat <<EOF
usage: install.sh [options]
  --prefix DIR          installation prefix (default /usr/local): DIR/lib/berth and DIR/bin/berthd
  --libdir DIR          where berth itself goes (default PREFIX/lib/berth)
  --bindir DIR          where the berthd launcher goes (default PREFIX/bin)
  --sysconfdir DIR      where berth/berth.toml and crictl.yaml go (default /etc)
  --unitdir DIR         where berthd.service goes (default /etc/systemd/system)
  --cachedir DIR        where berthd keeps V8's code cache of its bundle (default /var/cache/berth)
  --cgroup-driver D     cgroup.driver written to a new berth.toml: systemd or cgroupfs
                        (default: systemd when systemd runs this machine, else cgroupfs)
  --skip-packages       do not install Debian packages (they are already there)
  --skip-build          install the dist/ and native/build already built in this tree
  --no-enable           do not enable berthd.service
  --now                 also (re)start berthd.service
EOF
}

prefix=/usr/local libdir='' bindir='' sysconfdir=/etc unitdir=/etc/systemd/system cachedir=/var/cache/berth cgroup_driver=''
skip_packages=0 skip_build=0 enable=1 start=0
while (($#)); do
  case "$1" in
    --prefix) prefix="$2"; shift ;;
    --libdir) libdir="$2"; shift ;;
    --bindir) bindir="$2"; shift ;;
    --sysconfdir) sysconfdir="$2"; shift ;;
    --unitdir) unitdir="$2"; shift ;;
    --cachedir) cachedir="$2"; shift ;;
    --cgroup-driver) cgroup_driver="$2"; shift ;;
    --prefix=* | --libdir=* | --bindir=* | --sysconfdir=* | --unitdir=* | --cachedir=* | --cgroup-driver=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --skip-packages) skip_packages=1 ;;
    --skip-build) skip_build=1 ;;
    --no-enable) enable=0 ;;
    --now) start=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
libdir="${libdir:-$prefix/lib/berth}"
bindir="${bindir:-$prefix/bin}"
for dir in "$libdir" "$bindir" "$sysconfdir" "$unitdir" "$cachedir"; do
  case "$dir" in /*) ;; *) echo "install.sh: $dir: paths must be absolute" >&2; exit 2 ;; esac
done
if [ -z "$cgroup_driver" ]; then
  if [ -d /run/systemd/system ]; then cgroup_driver=systemd; else cgroup_driver=cgroupfs; fi
fi
case "$cgroup_driver" in systemd | cgroupfs) ;; *) echo "install.sh: --cgroup-driver: systemd or cgroupfs, got $cgroup_driver" >&2; exit 2 ;; esac
destdir="${DESTDIR:-}"

# Packages and the build: the same steps as a development machine, without the test packages.
if ((!skip_build)); then
  if ((skip_packages)); then bash "$src/scripts/setup.sh" --node --skip-packages; else bash "$src/scripts/setup.sh" --node; fi
elif ((!skip_packages)); then
  # shellcheck source=scripts/debian-packages.sh
  source "$src/scripts/debian-packages.sh"
  berth_install_debian_packages "${BERTH_RUNTIME_PACKAGES[@]}"
  berth_require_node
fi
for needed in dist/shim/berthd.js dist/shim/berthd.bundle.js native/build/Release/berth_native.node native/build/Release/berth-pause native/build/Release/berth-exec node_modules; do
  [ -e "$src/$needed" ] || { echo "install.sh: $src/$needed is missing: build first (run without --skip-build)" >&2; exit 1; }
done
node_bin="$(command -v node)" || { echo "install.sh: node is not on PATH" >&2; exit 1; }

# berth's own files go to a fresh directory beside the old one and replace it in one rename,
# so a failed copy never leaves half an installation.
target="$destdir$libdir"
stage="$target.new.$$"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dist" "$stage/cri-proto" "$stage/native/build/Release" "$(dirname "$target")"
for part in cni cri-proto native runtime shim; do cp -a "$src/dist/$part" "$stage/dist/"; done
# The build's own code cache (dist/berthd's) is not the installation's: berthd writes that one in the cache dir.
rm -f "$stage/dist/shim/berthd.bundle.cache" "$stage/dist/shim/berthd.snapshot-pending."*
cp -a "$src/package.json" "$src/package-lock.json" "$src/README.md" "$stage/"
cp -a "$src/cri-proto/api.proto" "$stage/cri-proto/"
cp -a "$src/native/binding.gyp" "$stage/native/"
cp -a "$src/native/build/Release/berth_native.node" "$src/native/build/Release/berth-pause" "$src/native/build/Release/berth-exec" "$stage/native/build/Release/"
# The production subset of the tree's node_modules (already built for this Node.js):
# pruning a copy needs no registry and no second compile of better-sqlite3.
cp -a "$src/node_modules/." "$stage/node_modules/"
(cd "$stage" && npm prune --omit=dev --offline --no-audit --no-fund --silent)
rm -rf "$target.old"
if [ -e "$target" ]; then mv "$target" "$target.old"; fi
mv "$stage" "$target"
rm -rf "$target.old"
trap - EXIT

mkdir -p "$destdir$bindir"
# The launcher execs node with berthd's V8 flags on the bundle's runner: written by the same code as the build's
# dist/berthd (shim/berthd-launcher.ts). berthd keeps V8's code cache of its bundle in the cache dir (written
# after the first start of each installed build; removing it only costs the next start the compile). Node
# starts from the build's startup snapshot (dist/shim/berthd.snapshot, copied with its modification time,
# which the launcher compares with the Node binary's) when the launcher can tell Node will take it; a build
# without one, or another Node binary, starts as before. A new installation gives the blob a new chance: the
# pending files an earlier start left (a start Node refused) go.
"$node_bin" "$src/dist/shim/berthd-launcher.js" "$destdir$bindir/berthd.new" "$libdir/dist/shim/bundle/bundle-runner.js" "$node_bin" "$cachedir/berthd.code-cache" "$libdir/dist/shim/berthd.snapshot"
mkdir -p -m 700 "$destdir$cachedir"
rm -f "$destdir$cachedir"/berthd.snapshot-pending.*
mv "$destdir$bindir/berthd.new" "$destdir$bindir/berthd"

mkdir -p "$destdir$unitdir"
sed -e "s|@BINDIR@|$bindir|g" -e "s|@LIBDIR@|$libdir|g" "$src/deploy/berthd.service" >"$destdir$unitdir/berthd.service"

# Configuration is the operator's: written once, never overwritten.
mkdir -p "$destdir$sysconfdir/berth"
if [ ! -e "$destdir$sysconfdir/berth/berth.toml" ]; then
  cat >"$destdir$sysconfdir/berth/berth.toml" <<EOF
# berthd configuration, written by scripts/install.sh. Keys left out take their
# defaults: \`berthd config default\` shows every key, \`berthd config check\` the result.

[cgroup]
# Must match the kubelet's cgroupDriver.
driver = "$cgroup_driver"
EOF
fi
if [ ! -e "$destdir$sysconfdir/crictl.yaml" ]; then
  cat >"$destdir$sysconfdir/crictl.yaml" <<EOF
runtime-endpoint: unix:///run/berth/berth.sock
image-endpoint: unix:///run/berth/berth.sock
timeout: 10
EOF
fi

# Enabling needs no running systemd (an image build has none); reloading and starting do.
if ((enable)) && [ -z "$destdir" ] && [ "$unitdir" = /etc/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  [ -d /run/systemd/system ] && systemctl daemon-reload
  systemctl enable berthd.service
  if ((start)) && [ -d /run/systemd/system ]; then systemctl restart berthd.service; fi
fi
echo "install.sh: berth installed in $destdir$libdir, launcher $destdir$bindir/berthd, unit $destdir$unitdir/berthd.service"
