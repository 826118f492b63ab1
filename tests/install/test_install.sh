#!/usr/bin/env bash
# cmake --install into a fresh prefix, then use only what was installed, as a plugin author
# and an operator would: the daemon, the tools, the headers, the SQL, the pkg-config files and
# the CMake package are in place; the example plugins build against the installed header, each
# through find_package(Syncbroker) and through pkg-config; client programs link libsyncclient
# both ways; the installed daemon loads the installed plugins and the examples (--check).
# Usage: test_install.sh BUILD_DIR SOURCE_DIR [LINK_FLAG] (the sanitizer flag of a sanitized
# build: its libsyncclient needs the sanitizer runtimes in the program)
set -euo pipefail
umask 022 # the third-party plugins built below must pass the loader's file-mode rule
build=$1 src=$2 link_flag=${3:-}
prefix=$(mktemp -d /tmp/sb-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

fail() { echo "test_install: $*" >&2; exit 1; }
for f in bin/syncbroker bin/sync-tail bin/sync-snapshot bin/sync-board bin/sync-keygen \
    include/syncbroker/plugin.h include/syncbroker/client.h \
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

# The examples, from the installed prefix only and linked against nothing of the broker, each
# built twice: by its own CMake project through find_package(Syncbroker) (whose install step
# puts it into Syncbroker_PLUGIN_DIR, the installed plugin folder), and by plain cc through
# pkg-config into a folder of their own (beside links to the installed plugins).
ccdir=$prefix/cc-plugins
mkdir "$ccdir"
ln -s "$plugindir/source_poll.so" "$plugindir/transport_zmq.so" "$ccdir/"
for ex in transport_file; do
    cmake -S "$src/examples/$ex" -B "$prefix/build-$ex" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
    cmake --build "$prefix/build-$ex" >/dev/null
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
add_executable(client_shared client.c)
target_link_libraries(client_shared PRIVATE Syncbroker::client)
add_executable(client_static client.c)
target_link_libraries(client_static PRIVATE Syncbroker::client_static)
CMAKE
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror $link_flag "$prefix/client/client.c" \
    -o "$prefix/client/client_pc" $(pkg-config --cflags --libs syncclient)
cmake -S "$prefix/client" -B "$prefix/client/build" -DCMAKE_PREFIX_PATH="$prefix" \
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

# The installed daemon checks a config that loads installed plugins and the examples, once
# from each folder they were built into.
for dir in "$plugindir" "$ccdir"; do
    cat >"$prefix/check.ini" <<INI
[broker]
plugin_dir = $dir
[database]
conninfo = host=127.0.0.1 port=1 dbname=none connect_timeout=1
tables = public.bookings
[source.main]
plugin = source_poll
[transport.zmq]
plugin = transport_zmq
pub = tcp://127.0.0.1:0
service = tcp://127.0.0.1:0
[transport.file]
plugin = transport_file
path = $prefix/events.log
INI
    out=$("$prefix/bin/syncbroker" -c "$prefix/check.ini" --check 2>&1) ||
        fail "syncbroker --check refused the plugins of $dir: $out"
    grep -q "transport_file" <<<"$out" || fail "--check did not list transport_file of $dir: $out"
done
echo "test_install: ok ($prefix)"
