#!/usr/bin/env bash
# cmake --install into a fresh prefix, then use only what was installed, as a plugin author
# and an operator would: the daemon, the tools, the headers, the SQL, the pkg-config files and
# the CMake package are in place; the example plugins build against the installed header, each
# through find_package(Syncbroker) and through pkg-config; client programs link libsyncclient
# both ways; source_memory's own unit tests, linked to the installed test host both ways, run
# both builds of it; the installed daemon loads the installed plugins and the examples
# (--check), then runs source_memory with transport_zmq, and the installed client tools see
# its rows.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR [LINK_FLAG] (the sanitizer flag of a sanitized
# build: its libsyncclient and libsyncbroker-testhost need the sanitizer runtimes in the
# program)
set -euo pipefail
umask 022 # the third-party plugins built below must pass the loader's file-mode rule
build=$1 src=$2 link_flag=${3:-}
prefix=$(mktemp -d /tmp/sb-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

fail() { echo "test_install: $*" >&2; exit 1; }
for f in bin/syncbroker bin/sync-tail bin/sync-snapshot bin/sync-board bin/sync-keygen \
    include/syncbroker/plugin.h include/syncbroker/client.h include/syncbroker/testhost.h \
    share/syncbroker/sql/001_schema.sql share/syncbroker/sql/002_capture.sql \
    share/syncbroker/sql/003_privileges.sql; do
    [[ -e $prefix/$f ]] || fail "$f was not installed"
done
"$prefix/bin/sync-keygen" -d "$prefix" installed >/dev/null && [[ -s $prefix/installed.key ]] ||
    fail "the installed sync-keygen does not write a key pair"
pc=$(find "$prefix" -name syncbroker-plugin.pc -print -quit)
[[ -n $pc ]] || fail "syncbroker-plugin.pc was not installed"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
plugindir=$(pkg-config --variable=plugindir syncbroker-plugin)
for p in source_poll source_notify transport_zmq; do
    [[ -e $plugindir/$p.so ]] || fail "$p.so is not in the plugindir pkg-config names ($plugindir)"
done
# The plugin ABI the installed header has, as pkg-config and the CMake package (below) say it.
abi=$(sed -n 's/^#define SB_ABI_\(MAJOR\|MINOR\) \([0-9]*\)$/\2/p' "$prefix/include/syncbroker/plugin.h" |
    paste -sd.)
[[ $(pkg-config --variable=pluginabi syncbroker-plugin) == "$abi" ]] ||
    fail "pkg-config's pluginabi is not the installed header's ABI $abi"

# The examples, from the installed prefix only and linked against nothing of the broker, each
# built twice: by its own CMake project through find_package(Syncbroker) (whose install step
# puts it into Syncbroker_PLUGIN_DIR, the installed plugin folder), and by plain cc through
# pkg-config into a folder of their own (beside links to the installed plugins).
ccdir=$prefix/cc-plugins
mkdir "$ccdir"
ln -s "$plugindir/source_poll.so" "$plugindir/transport_zmq.so" "$ccdir/"
for ex in transport_file source_memory; do
    cmake -S "$src/examples/$ex" -B "$prefix/build-$ex" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" -DCMAKE_EXE_LINKER_FLAGS="$link_flag" >/dev/null
    # Built under a umask of 002: syncbroker_add_plugin keeps the module loadable anyway.
    (umask 002 && cmake --build "$prefix/build-$ex" >/dev/null)
    cmake --install "$prefix/build-$ex" >/dev/null
    [[ -e $plugindir/$ex.so ]] || fail "find_package(Syncbroker) did not install $ex.so in $plugindir"
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -Wl,--no-undefined \
        $(pkg-config --cflags syncbroker-plugin) "$src/examples/$ex/$ex.c" -o "$ccdir/$ex.so"
done

# A client program through syncclient.pc, and through find_package(Syncbroker) linking
# Syncbroker::client and Syncbroker::client_static.
mkdir "$prefix/client"
cat >"$prefix/client/client.c" <<'C'
#include <syncbroker/client.h>
#include <stdio.h>
int main(void)
{
    puts(sb_strerror(SB_OK));
    return 0;
}
C
cat >"$prefix/client/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(client C)
find_package(Syncbroker 0.1 REQUIRED)
if(NOT Syncbroker_ABI_VERSION STREQUAL EXPECTED_ABI)
  message(FATAL_ERROR "Syncbroker_ABI_VERSION is ${Syncbroker_ABI_VERSION}, not ${EXPECTED_ABI}")
endif()
add_executable(client_shared client.c)
target_link_libraries(client_shared PRIVATE Syncbroker::client)
add_executable(client_static client.c)
target_link_libraries(client_static PRIVATE Syncbroker::client_static)
CMAKE
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror $link_flag "$prefix/client/client.c" \
    -o "$prefix/client/client_pc" $(pkg-config --cflags --libs syncclient)
cmake -S "$prefix/client" -B "$prefix/client/build" -DCMAKE_PREFIX_PATH="$prefix" -DEXPECTED_ABI="$abi" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" -DCMAKE_EXE_LINKER_FLAGS="$link_flag" >/dev/null
cmake --build "$prefix/client/build" >/dev/null
export LD_LIBRARY_PATH
LD_LIBRARY_PATH=$(pkg-config --variable=libdir syncclient)
for c in client_pc build/client_shared build/client_static; do
    "$prefix/client/$c" >/dev/null || fail "client/$c (linked to the installed libsyncclient) does not run"
done
if ldd "$prefix/client/build/client_static" | grep -q libsyncclient; then
    fail "Syncbroker::client_static linked the shared libsyncclient"
fi

# source_memory's unit tests, as its author runs them: the find_package build registered them
# with ctest (when the package has Syncbroker::testhost: no tests is an error) and they load
# the plugin built beside them; the same test linked by cc through syncbroker-testhost.pc
# loads the plugin cc built.
out=$(ctest --test-dir "$prefix/build-source_memory" --no-tests=error --output-on-failure 2>&1) ||
    fail "source_memory's tests (find_package, Syncbroker::testhost) failed: $out"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror $link_flag "$src/examples/source_memory/test_source_memory.c" \
    -o "$prefix/test_source_memory" $(pkg-config --cflags --libs syncbroker-testhost)
out=$("$prefix/test_source_memory" "$ccdir" 2>&1) ||
    fail "source_memory's tests (cc, pkg-config syncbroker-testhost) failed: $out"

# The installed daemon checks configs that load the installed plugins and the examples, from
# each folder the examples were built into.
check_config() { # FILE DIR EXAMPLE...: --check passes and names each example as loaded
    local out file=$1 dir=$2
    shift 2
    out=$("$prefix/bin/syncbroker" -c "$file" --check 2>&1) ||
        fail "syncbroker --check refused $file (plugins of $dir): $out"
    for ex in "$@"; do
        grep -q "plugin = $ex  ; $ex " <<<"$out" || fail "--check did not load $ex of $dir: $out"
    done
}
# Both configs below load both transports.
transports="[transport.zmq]
plugin = transport_zmq
pub = tcp://127.0.0.1:0
service = tcp://127.0.0.1:0
[transport.file]
plugin = transport_file
path = $prefix/events.log"
for dir in "$plugindir" "$ccdir"; do
    cat >"$prefix/poll.ini" <<INI
[broker]
plugin_dir = $dir
[database]
conninfo = host=127.0.0.1 port=1 dbname=none connect_timeout=1
tables = public.bookings
[source.main]
plugin = source_poll
$transports
INI
    # source_memory declares no [database] keys: `tables` is all that section holds.
    cat >"$prefix/memory.ini" <<INI
[broker]
plugin_dir = $dir
[database]
tables = public.ticks, public.rooms
[source.memory]
plugin = source_memory
fifo = $prefix/changes
interval_ms = 100
$transports
INI
    check_config "$prefix/poll.ini" "$dir" transport_file
    check_config "$prefix/memory.ini" "$dir" source_memory transport_file
done

# The installed broker runs source_memory (the find_package build) and transport_zmq on ports
# the system picks; the installed sync-tail follows both tables and sync-snapshot reads them.
# Every wait is on a line that the broker or sync-tail prints (read -t bounds each).
run=$prefix/run
mkdir "$run"
mkfifo "$run/broker.err" "$run/tail.out" "$run/tail.err"
cat >"$run/memory.ini" <<INI
[broker]
plugin_dir = $plugindir
debounce_ms = 0
heartbeat_ms = 100
[database]
tables = public.ticks, public.rooms
[source.memory]
plugin = source_memory
fifo = $run/changes
interval_ms = 100
[transport.zmq]
plugin = transport_zmq
pub = tcp://127.0.0.1:0
service = tcp://127.0.0.1:0
INI
export ASAN_OPTIONS=detect_leaks=0 # the tools and broker of a sanitized build; leaks: valgrind
pids=()
stop_all() { # the broker and sync-tail, whatever happened: nothing outlives the test
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait
    rm -rf "$prefix"
}
trap stop_all EXIT
"$prefix/bin/syncbroker" -c "$run/memory.ini" 2>"$run/broker.err" &
broker=$!
pids+=("$broker")
exec 3<"$run/broker.err"
pub='' service=''
while [[ -z $pub || -z $service ]] && read -r -t 20 -u 3 line; do
    echo "$line" >>"$run/broker.log"
    case $line in
    *"events "*"listening on tcp://"*) pub=${line##* } ;;
    *"service "*"listening on tcp://"*) service=${line##* } ;;
    esac
done
cat <&3 >>"$run/broker.log" &
run_fail() { fail "$*; the broker said: $(cat "$run/broker.log")"; }
[[ -n $pub && -n $service ]] || run_fail "the broker did not say where it listens"

"$prefix/bin/sync-tail" --pub "$pub" --service "$service" --table public.rooms \
    --table public.ticks >"$run/tail.out" 2>"$run/tail.err" &
pids+=("$!")
exec 4<"$run/tail.out" 5<"$run/tail.err"
line=''
until [[ ${line:-} == online ]]; do
    read -r -t 20 -u 5 line || run_fail "sync-tail did not get online"
done
cat <&5 >"$run/tail.log" &

next_event() { # TABLE: the next event of TABLE that sync-tail prints (a JSON line)
    local ev
    while read -r -t 20 -u 4 ev; do
        if [[ $ev == *'"table":"'"$1"'"'* ]]; then
            printf '%s\n' "$ev"
            return
        fi
    done
    run_fail "no event of $1 from sync-tail"
}
expect() { # JSON PYTHON-CONDITION-ON-e: the decoded JSON satisfies the condition
    /usr/bin/python3 -c 'import json, sys; e = json.loads(sys.argv[1]); sys.exit(not eval(sys.argv[2]))' \
        "$1" "$2" || run_fail "expected $2, got $1"
}
snapshot() { # TABLE: the rows of a snapshot, as one JSON list
    "$prefix/bin/sync-snapshot" --service "$service" --table "$1" --timeout-ms 10000 |
        /usr/bin/python3 -c 'import json, sys; print(json.dumps([json.loads(l) for l in sys.stdin]))'
}
change() { echo "$*" >"$run/changes"; }

change upsert public.rooms 7 name=Blue floor=3
expect "$(next_event public.rooms)" \
    'e["key"] == "7" and e["op"] == "insert" and e["version"] == 1 and e["row"] == {"name": "Blue", "floor": 3}'
expect "$(snapshot public.rooms)" \
    '[(r["key"], r["version"], r["row"]) for r in e] == [("7", 1, {"name": "Blue", "floor": 3})]'
change upsert public.rooms 7 name=Green
expect "$(next_event public.rooms)" 'e["op"] == "update" and e["version"] == 2 and e["row"] == {"name": "Green"}'
change delete public.rooms 7
expect "$(next_event public.rooms)" 'e["op"] == "delete" and e["version"] == 3 and e["row"] is None'
change upsert public.rooms 8 name=Red
expect "$(next_event public.rooms)" 'e["op"] == "insert" and e["version"] == 1'
expect "$(snapshot public.rooms)" '[(r["key"], r["row"]) for r in e] == [("8", {"name": "Red"})]'
expect "$(next_event public.ticks)" 'e["key"] == "counter" and e["row"]["count"] >= 1'
expect "$(snapshot public.ticks)" '[r["key"] for r in e] == ["counter"] and e[0]["row"]["count"] >= 1'

kill -TERM "$broker"
wait "$broker" || run_fail "the broker did not stop cleanly on SIGTERM (exit $?)"
echo "test_install: ok ($prefix)"
