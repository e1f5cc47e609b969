#!/usr/bin/env bash
# Install and start what Hakobune needs on this host, and only what is missing:
# Debian packages (Docker Engine, Caddy, debootstrap, Redis, git, ...), a running
# Docker Engine, a running Redis, and the project's virtualenv in .venv.
#
# Idempotent; meant to be run as root on Debian 12 or 13 (the Makefile runs it first).
# Environment:
#   HAKOBUNE_DATA_DIR  where logs, pid files and Redis' directory go (default: ./var)
#   REDIS_URL          the Redis to check or start (default: redis://127.0.0.1:6379/0)
#   PYTHON             a Python >= 3.12 to build .venv with (default: found on PATH or in pyenv)
#   HAKOBUNE_WITH_BROWSER=1  also install Debian's chromium, for the browser tests
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VAR="${HAKOBUNE_DATA_DIR:-$ROOT/var}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

ok() { printf '✓ %s\n' "$*"; }
note() { printf '  %s\n' "$*"; }
die() { printf '✗ %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

mkdir -p "$VAR/log" "$VAR/run"

# --- Debian packages -------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    [ "$#" -gt 0 ] || return 0
    is_root || die "missing packages: $*; run this script as root (sudo $0) or install them."
    command -v apt-get >/dev/null 2>&1 || die "missing: $*; this script installs with apt-get (Debian 12 or 13)."
    if [ "$APT_UPDATED" -eq 0 ]; then
        note "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    note "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@"
}

# "command package" pairs: the package is installed when the command is missing.
REQUIRED=(
    "dockerd docker.io"
    "docker docker.io"
    "caddy caddy"
    "debootstrap debootstrap"
    "redis-server redis-server"
    "redis-cli redis-tools"
    "git git"
    "curl curl"
    "update-ca-certificates ca-certificates"
    "iptables iptables"
    "wrk wrk"  # the load generator of bench/router_overhead.py
    "msgfmt gettext"  # checks and compiles the Japanese catalogue (tests/unit/test_i18n.py)
)
# The browser tests drive Debian's Chromium; only `make test` asks for it.
if [ "${HAKOBUNE_WITH_BROWSER:-0}" = 1 ]; then
    REQUIRED+=("chromium chromium")
fi
MISSING=()
for pair in "${REQUIRED[@]}"; do
    cmd="${pair%% *}"
    pkg="${pair#* }"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " ${MISSING[*]-} " in *" $pkg "*) ;; *) MISSING+=("$pkg") ;; esac
    fi
done

# The browser tests look at Japanese pages: without a Japanese font they show boxes.
if [ "${HAKOBUNE_WITH_BROWSER:-0}" = 1 ] && ! { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ja 2>/dev/null)" ]; }; then
    MISSING+=(fonts-ipafont-gothic)
fi

# --- Python >= 3.12 ----------------------------------------------------------------

py_ok() {  # py_ok PYTHON: it runs and is at least 3.12
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}
py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }

find_python() {
    local candidate
    local -a candidates=()
    [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
    for candidate in python3.13 python3.12 python3; do
        command -v "$candidate" >/dev/null 2>&1 && candidates+=("$(command -v "$candidate")")
    done
    # pyenv installs, newest first (the shims on PATH only answer for the selected version).
    local -a pyenvs=()
    for candidate in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3; do
        [ -x "$candidate" ] && pyenvs+=("$candidate")
    done
    if [ "${#pyenvs[@]}" -gt 0 ]; then
        while IFS= read -r candidate; do candidates+=("$candidate"); done \
            < <(printf '%s\n' "${pyenvs[@]}" | sort -V -r -u)
    fi
    for candidate in "${candidates[@]}"; do
        if py_ok "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

debian_major() {
    local v=""
    [ -r /etc/os-release ] && v="$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")"
    printf '%s' "${v%%.*}"
}

PY="$(find_python || true)"
if [ -z "$PY" ]; then
    major="$(debian_major)"
    if [ -n "$major" ] && [ "$major" -ge 13 ] 2>/dev/null; then
        MISSING+=(python3 python3-venv)   # Debian 13's python3 is 3.13
        PY=/usr/bin/python3
    else
        die "Hakobune needs Python >= 3.12 and none was found (tried \$PYTHON, python3.13, python3.12, python3, ~/.pyenv/versions/3.1x). Debian ${major:-?} ships an older one: install 3.12+ (e.g. 'pyenv install 3.12'), then re-run with PYTHON=/path/to/python3.12."
    fi
elif ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's own interpreter without its venv package.
    case "$PY" in
        /usr/bin/*) MISSING+=(python3-venv "python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv") ;;
        *) die "$PY cannot create virtualenvs (no venv/ensurepip module); install them or set PYTHON to another Python >= 3.12." ;;
    esac
fi

CADDY_WAS_MISSING=0
command -v caddy >/dev/null 2>&1 || CADDY_WAS_MISSING=1

if [ "${#MISSING[@]}" -gt 0 ]; then
    apt_install "${MISSING[@]}"
    for pair in "${REQUIRED[@]}"; do
        command -v "${pair%% *}" >/dev/null 2>&1 || die "${pair%% *} is still missing after installing ${pair#* }"
    done
    ok "packages installed: ${MISSING[*]}"
else
    ok "packages present (docker, caddy, debootstrap, redis, git, curl, ca-certificates, iptables)"
fi

if [ "$CADDY_WAS_MISSING" -eq 1 ] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet caddy 2>/dev/null; then
    # Debian's package starts a system Caddy holding :80 and the admin API on :2019,
    # which Hakobune's own router needs.
    systemctl disable --now caddy >/dev/null 2>&1 || true
    note "stopped Debian's caddy.service (Hakobune runs its own Caddy)"
fi

# --- The router's reloads ---------------------------------------------------------------

# Caddy switches a route (every deploy) by reloading: it opens a second listening
# socket with SO_REUSEPORT and closes the first. Connections still waiting in the
# first one's queue are reset then (a request dropped during a deploy) unless the
# kernel hands them to the second one: net.ipv4.tcp_migrate_req, Linux 5.14+.
# bench/router_reload.py measures it.
MIGRATE=/proc/sys/net/ipv4/tcp_migrate_req
if [ ! -e "$MIGRATE" ]; then
    note "this kernel cannot hand waiting connections to a reloaded router (no tcp_migrate_req, Linux < 5.14);"
    note "a request arriving during a deploy's route switch may be reset"
elif [ "$(cat "$MIGRATE")" = 1 ]; then
    ok "router reloads keep waiting connections (net.ipv4.tcp_migrate_req = 1)"
elif is_root; then
    sysctl -qw net.ipv4.tcp_migrate_req=1
    if [ -d /etc/sysctl.d ]; then
        printf '# Hakobune: Caddy reloads keep the connections waiting on the old socket.\nnet.ipv4.tcp_migrate_req = 1\n' \
            >/etc/sysctl.d/60-hakobune.conf
    fi
    ok "router reloads keep waiting connections (set net.ipv4.tcp_migrate_req = 1)"
else
    note "set net.ipv4.tcp_migrate_req = 1 as root, or requests arriving during a deploy's route switch may be reset"
fi

# --- Many team networks ----------------------------------------------------------------

# Each team has its own bridge, and the host talks to every instance it routes to over
# its team's bridge (docker-proxy dials the container's address), one neighbour (ARP)
# entry each. The kernel's default cap on that table is 1,024 entries
# (gc_thresh3) across all interfaces: past it, new connections to instances fail with
# "neighbour table overflow". Raised for a host of many teams (bench/teams.py).
NEIGH=/proc/sys/net/ipv4/neigh/default/gc_thresh3
if [ -e "$NEIGH" ] && [ "$(cat "$NEIGH")" -lt 16384 ]; then
    if is_root; then
        sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 \
            net.ipv4.neigh.default.gc_thresh3=16384
        if [ -d /etc/sysctl.d ]; then
            printf '# Hakobune: one neighbour entry per routed instance, over many team bridges.\n%s\n%s\n%s\n' \
                'net.ipv4.neigh.default.gc_thresh1 = 4096' 'net.ipv4.neigh.default.gc_thresh2 = 8192' \
                'net.ipv4.neigh.default.gc_thresh3 = 16384' >/etc/sysctl.d/61-hakobune-neighbours.conf
        fi
        ok "room for many instances' neighbour entries (net.ipv4.neigh.default.gc_thresh3 = 16384)"
    else
        note "as root, raise net.ipv4.neigh.default.gc_thresh3 (1,024 by default) on a host of many teams"
    fi
fi

# --- Docker Engine ---------------------------------------------------------------------

if docker info >/dev/null 2>&1; then
    ok "docker engine running"
else
    is_root || die "the Docker Engine is not running and only root can start it (sudo $0)."
    pidfile="$VAR/run/dockerd.pid"
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        note "dockerd ($pid) is starting; waiting for it"
    else
        note "starting dockerd (log: $VAR/log/dockerd.log)"
        nohup setsid dockerd >"$VAR/log/dockerd.log" 2>&1 </dev/null &
        echo "$!" >"$pidfile"
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 15 "$VAR/log/dockerd.log" >&2 || true
        die "the Docker Engine did not come up within 30 s; see $VAR/log/dockerd.log"
    fi
    ok "docker engine running (started, pid $(cat "$pidfile"))"
fi

# --- Redis -----------------------------------------------------------------------------

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
if [ -n "${REDIS_URL:-}" ]; then
    # redis://[user:password@]host[:port][/db]
    re='^rediss?://([^@/]*@)?(\[[^]]+\]|[^:/]+)(:([0-9]+))?(/.*)?$'
    if [[ "$REDIS_URL" =~ $re ]]; then
        REDIS_HOST="${BASH_REMATCH[2]}"
        REDIS_HOST="${REDIS_HOST#[}"
        REDIS_HOST="${REDIS_HOST%]}"
        REDIS_PORT="${BASH_REMATCH[4]:-6379}"
    else
        die "cannot read host and port from REDIS_URL=$REDIS_URL (expected redis://host:port/db)"
    fi
fi

redis_answers() {
    local reply
    reply="$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>&1 || true)"
    # PONG, or a password-protected Redis refusing us: either way it is there.
    case "$reply" in *PONG*|*NOAUTH*|*"Authentication required"*) return 0 ;; esac
    return 1
}

if redis_answers; then
    ok "redis answering on $REDIS_HOST:$REDIS_PORT"
else
    case "$REDIS_HOST" in
        127.*|localhost|::1) ;;
        *) die "nothing answers on $REDIS_HOST:$REDIS_PORT (REDIS_URL); start that Redis or point REDIS_URL at a local one." ;;
    esac
    BIND=127.0.0.1
    [ "$REDIS_HOST" = "::1" ] && BIND=::1
    mkdir -p "$VAR/redis"
    note "starting redis-server on $BIND port $REDIS_PORT (log: $VAR/log/redis.log)"
    redis-server --daemonize yes --bind "$BIND" --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$VAR/redis" --logfile "$VAR/log/redis.log" --pidfile "$VAR/run/redis.pid"
    for _ in $(seq 1 20); do
        redis_answers && break
        sleep 0.5
    done
    redis_answers || die "redis-server did not answer within 10 s; see $VAR/log/redis.log"
    ok "redis answering on $BIND port $REDIS_PORT (started)"
fi

# --- .venv -------------------------------------------------------------------------------

if [ -x .venv/bin/python ] && py_ok .venv/bin/python; then
    ok "python $(py_version .venv/bin/python) in .venv"
else
    if [ -e .venv ]; then
        note "recreating .venv (its Python is missing or older than 3.12)"
        rm -rf .venv
    fi
    "$PY" -m venv .venv || die "could not create .venv with $PY"
    ok "python $(py_version .venv/bin/python) in .venv (created from $PY)"
fi

if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    note "installing Python dependencies (.venv/bin/pip install -e '.[test]')"
    .venv/bin/pip install --disable-pip-version-check -q -e '.[test]'
    touch .venv/.installed
    ok "python dependencies installed"
else
    ok "python dependencies up to date"
fi
