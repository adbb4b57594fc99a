# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: package installation, section
# headers and small helpers. Source it; it defines functions only.

# Everything herald needs to build, test and demo on Debian 12.
HERALD_PACKAGES=(
    build-essential cmake pkg-config clang libclang-rt-14-dev
    liburing-dev libhiredis-dev libyaml-dev libssl-dev libjansson-dev libc-ares-dev libidn2-dev
    libpsl-dev publicsuffix
    redis-server postfix python3 python3-aiosmtpd python3-redis python3-cryptography
    dnsmasq-base valgrind curl python3-dkim opendkim-tools openssl iproute2 util-linux
    gnuplot-nox prometheus strace
    php-cli php-redis nodejs python3-jsonschema
)
# The examples' test (tests/integration/test_examples.py) runs examples/ with
# Debian's PHP and phpredis, and with node + npm. npm is asked for only when
# there is no npm command: a Node.js from elsewhere (NodeSource's nodejs
# package) brings its own and conflicts with Debian's npm package.
HERALD_PY=/usr/bin/python3
# What scripts/demo needs: the build, Redis and Python with redis-py (no
# clang, valgrind, postfix or the test tools).
HERALD_DEMO_PACKAGES=(
    build-essential cmake pkg-config
    liburing-dev libhiredis-dev libyaml-dev libssl-dev libjansson-dev libc-ares-dev libidn2-dev
    libpsl-dev publicsuffix redis-server python3 python3-redis
)

section() {
    printf '\n==== %s ====\n' "$*"
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# Print, one per line, the packages among "$@" that are not installed.
missing_packages() {
    local p status
    for p in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
            *" installed") ;;
            *) echo "$p" ;;
        esac
    done
}

# PIDs of the system daemons a package install might start: redis-server
# running as the "redis" user (test instances run as the invoking user) and
# postfix's master. Other people's test servers never match.
daemon_pids() {
    {
        pgrep -u redis -x redis-server 2>/dev/null || true
        pgrep -f '^/usr/lib/postfix/sbin/master' 2>/dev/null || true
    } | sort -u
}

# Install whatever is missing from HERALD_PACKAGES. Package maintainer scripts
# must not leave daemons running on our behalf: a temporary policy-rc.d tells
# invoke-rc.d (and deb-systemd-invoke) not to start services, and postfix is
# preseeded to "No configuration". Any redis/postfix process that still
# appeared during the install was started by us, so we stop exactly those.
# install_packages [PKG...]: the given packages, default HERALD_PACKAGES.
install_packages() {
    local missing want=("$@") full=0
    [ "${#want[@]}" -eq 0 ] && want=("${HERALD_PACKAGES[@]}") && full=1
    mapfile -t missing < <(missing_packages "${want[@]}")
    # The whole set (the tests) wants npm too, unless a Node.js brought its own.
    if [ "$full" -eq 1 ] && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all ${#want[@]} packages present"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing packages: ${missing[*]} (and no apt-get to install them)" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"

    local before policy_added=0 rc=0 enabled_before
    before=$(daemon_pids)
    enabled_before=$(enabled_units)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d' &&
            policy_added=1
        # Interrupted mid-install, the next apt-get must not find it.
        trap 'as_root rm -f /usr/sbin/policy-rc.d' INT TERM EXIT
    fi
    if printf '%s\n' "${missing[@]}" | grep -qx postfix; then
        echo "postfix postfix/main_mailer_type select No configuration" |
            as_root debconf-set-selections 2>/dev/null || true
    fi

    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    if [ "$rc" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    fi

    if [ "$policy_added" -eq 1 ]; then
        as_root rm -f /usr/sbin/policy-rc.d
        trap - INT TERM EXIT
    fi
    # Packages enable their services (redis-server, postfix, prometheus):
    # the tests start their own servers, so undo what this install enabled.
    local unit
    for unit in $(comm -13 <(echo "$enabled_before") <(enabled_units)); do
        echo "disabling $unit, enabled by the package install"
        as_root systemctl --no-reload disable "$unit" >/dev/null 2>&1 || true
    done
    local pid
    for pid in $(comm -13 <(echo "$before") <(daemon_pids)); do
        echo "stopping daemon pid $pid started by the package install"
        as_root kill "$pid" 2>/dev/null || true
    done

    if [ "$rc" -ne 0 ]; then
        echo "apt-get failed (exit $rc)" >&2
        return "$rc"
    fi
    mapfile -t missing < <(missing_packages "${want[@]}")
    if [ "${#missing[@]}" -ne 0 ]; then
        echo "still missing after install: ${missing[*]}" >&2
        return 1
    fi
    echo "packages ready"
}

# Units enabled through multi-user.target (what a package install adds).
enabled_units() {
    ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null | sort
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    "$HERALD_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Wait until 127.0.0.1:$1 accepts connections, at most $2 seconds.
wait_port() {
    local port=$1 limit_s=${2:-10} i
    for ((i = 0; i < limit_s * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
