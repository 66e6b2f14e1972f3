# The Debian packages berth needs, in one list for scripts/setup.sh (a
# development or CI machine) and scripts/install.sh (a node). Sourced, not run.

# What a node needs to run berthd: the OCI runtimes and their monitor, CNI
# plugins, the network tools the plugins call, zstd for zstd layers, and criu
# for checkpoint/restore (Debian 12's criu 3.17 cannot start on x86 Linux 6.13+,
# which splits the vDSO data into [vvar] and [vvar_vclock]; criu 4.1 knows that).
BERTH_RUNTIME_PACKAGES=(
  runc crun conmon containernetworking-plugins iptables iproute2 util-linux zstd ca-certificates criu
)
# What building berth needs (node-gyp compiles the native addon and better-sqlite3).
BERTH_BUILD_PACKAGES=(build-essential python3)
# What the test suite needs beyond that: busybox-static for test images, a
# registry and htpasswd for the registry tests, and debootstrap, systemd-nspawn
# and dbus to boot a real systemd for the systemd cgroup driver tests.
BERTH_TEST_PACKAGES=(
  busybox-static docker-registry apache2-utils debootstrap systemd-container dbus
)
# Node.js from the distribution, installed only when no `node` is on PATH (Debian 13
# has 20.x; Debian 12's 18.x is too old, see berth_require_node).
BERTH_NODE_PACKAGES=(nodejs npm)

# Installs the named packages that are not installed yet (one apt-get run).
berth_install_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "berth: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# berth needs Node.js >= 20 (package.json engines): install the distribution's when
# there is none, then refuse an older one with what to do about it.
berth_require_node() {
  if ! command -v node >/dev/null 2>&1; then
    berth_install_debian_packages "${BERTH_NODE_PACKAGES[@]}"
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if ((major < 20)); then
    echo "berth: Node.js >= 20 is needed, found $(node --version 2>/dev/null || echo none) at $(command -v node || echo '(none)');" \
      "install Node.js 20 or later (Debian 13's nodejs, or a Node.js 20 package for Debian 12) and run this again" >&2
    return 1
  fi
}
