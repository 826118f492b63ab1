# shellcheck shell=bash
# Shared functions for scripts/demo, scripts/test and the benchmarks. Source it; it sets
# SB_ROOT (the repository) and SB_PG_BIN. PostgreSQL always runs as an unprivileged user
# (sbpg when we are root), listens on 127.0.0.1 only, and keeps its socket inside its data dir.

SB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SB_PG_BIN=/usr/lib/postgresql/15/bin
SB_PYTHON=/usr/bin/python3
SB_DEPS=(build-essential cmake pkg-config libpq-dev libzmq3-dev libmsgpack-dev libinih-dev
    libcmocka-dev postgresql-15 python3-zmq python3-msgpack python3-psycopg2 python3-pytest
    valgrind gnuplot-nox postgresql-15-wal2json clang libclang-rt-14-dev)
export SB_ROOT SB_PG_BIN

sb_log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

sb_die() {
    sb_log "$*"
    exit 1
}

# Installs the Debian packages in SB_DEPS that are missing (apt-get update once, only then).
sb_install_deps() {
    local missing=() pkg
    for pkg in "${SB_DEPS[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]]; then
        sb_die "missing packages; as root run: apt-get install ${missing[*]}"
    fi
    sb_log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Sets SB_PG_USER: as root the system user sbpg (created if missing), else the current user.
sb_pg_user() {
    if [[ $(id -u) -ne 0 ]]; then
        SB_PG_USER=$(id -un)
    else
        if ! id sbpg >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin sbpg
        fi
        SB_PG_USER=sbpg
    fi
    export SB_PG_USER
}

# Runs a command as SB_PG_USER.
sb_as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$SB_PG_USER" -- "$@"
    else
        "$@"
    fi
}

# sb_build DIR [cmake args...]: configure the repository into DIR and build everything (or
# only the target SB_BUILD_TARGET names). The output goes to DIR/build.log; its end is shown
# when the build fails.
sb_build() {
    local dir=$1
    shift
    mkdir -p "$dir"
    if ! { cmake -S "$SB_ROOT" -B "$dir" "$@" &&
        cmake --build "$dir" -j "$(nproc)" ${SB_BUILD_TARGET:+--target "$SB_BUILD_TARGET"}; } \
        >"$dir/build.log" 2>&1; then
        tail -n 40 "$dir/build.log" >&2
        sb_die "build failed (full log: $dir/build.log)"
    fi
}

# Prints a TCP port that was free on 127.0.0.1 a moment ago.
sb_free_port() {
    "$SB_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# sb_pg_conninfo PORT [DBNAME]
sb_pg_conninfo() {
    printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$1" "${2:-postgres}"
}

# sb_pg_start DATADIR PORT: initdb DATADIR if it holds no cluster, then start it on PORT.
# fsync stays on (benchmarks want realism) unless SB_PG_FAST=1. Logs go to DATADIR/log.
sb_pg_start() {
    local datadir=$1 port=$2 fast=()
    [[ -n ${SB_PG_USER:-} ]] || sb_pg_user
    if [[ ! -f $datadir/PG_VERSION ]]; then
        mkdir -p "$datadir"
        chmod 700 "$datadir"
        [[ $(id -u) -eq 0 ]] && chown "$SB_PG_USER:" "$datadir"
        sb_as_pg "$SB_PG_BIN/initdb" -D "$datadir" -A trust -U postgres -E UTF8 \
            --locale=C.UTF-8 --no-sync >/dev/null
    fi
    if [[ ${SB_PG_FAST:-0} == 1 ]]; then
        fast=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
    fi
    # Settings go on the command line: a restart with another port needs no edit of the files.
    sb_as_pg "$SB_PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$datadir' \
-c wal_level=logical -c max_connections=100 ${fast[*]}" >/dev/null ||
        { tail -n 20 "$datadir/log" >&2; sb_die "PostgreSQL did not start (log: $datadir/log)"; }
}

# sb_pg_stop DATADIR: fast shutdown if it runs; harmless otherwise.
sb_pg_stop() {
    local datadir=$1
    [[ -f $datadir/postmaster.pid ]] || return 0
    [[ -n ${SB_PG_USER:-} ]] || sb_pg_user
    sb_as_pg "$SB_PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 60 stop >/dev/null || true
}

# sb_psql PORT DBNAME [psql args...]
sb_psql() {
    local port=$1 db=$2
    shift 2
    "$SB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$(sb_pg_conninfo "$port" "$db")" "$@"
}
