#!/usr/bin/env bash
# cmake --install into a fresh prefix, then use only what was installed, as a plugin author
# and an operator would: the daemon, the tools, the headers, the SQL and the pkg-config files
# are in place; a third-party plugin (examples/transport_file) builds against the installed
# header through pkg-config; a client program links libsyncclient through pkg-config; the
# installed daemon loads the installed plugins and that plugin (--check).
# Usage: test_install.sh BUILD_DIR SOURCE_DIR [LINK_FLAG] (the sanitizer flag of a sanitized
# build: its libsyncclient needs the sanitizer runtimes in the program)
set -euo pipefail
umask 022 # the third-party plugin built below must pass the loader's file-mode rule
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

# A third-party plugin: the installed header only, linked against nothing of the broker,
# dropped into the plugin folder as docs/plugins.md says.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -Wl,--no-undefined \
    $(pkg-config --cflags syncbroker-plugin) \
    "$src/examples/transport_file/transport_file.c" -o "$plugindir/transport_file.so"

# A client program through syncclient.pc.
cat >"$prefix/client.c" <<'C'
#include <syncbroker/client.h>
#include <stdio.h>
int main(void)
{
    puts(sb_strerror(SB_OK));
    return 0;
}
C
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror $link_flag "$prefix/client.c" -o "$prefix/client" \
    $(pkg-config --cflags --libs syncclient)
LD_LIBRARY_PATH=$(pkg-config --variable=libdir syncclient) "$prefix/client" >/dev/null ||
    fail "a program linked through syncclient.pc does not run"

# The installed daemon checks a config that loads installed plugins and the third-party one.
cat >"$prefix/syncbroker.ini" <<INI
[broker]
plugin_dir = $plugindir
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
out=$("$prefix/bin/syncbroker" -c "$prefix/syncbroker.ini" --check 2>&1) ||
    fail "syncbroker --check refused the installed plugins: $out"
grep -q "transport_file" <<<"$out" || fail "--check did not list the third-party plugin: $out"
echo "test_install: ok ($prefix)"
