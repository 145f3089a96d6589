#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, in a directory of
# its own, trusting local connections as the user `crm`:
#
#   scripts/pg-cluster.sh start DIR PORT   makes DIR (must not exist) and starts
#                                          it on 127.0.0.1:PORT; prints the URL
#                                          postgres://crm@127.0.0.1:PORT/postgres
#   scripts/pg-cluster.sh stop DIR         stops it and removes DIR
#
# initdb and pg_ctl refuse to run as root, so as root they run as the
# postgres user. `scripts/setup.sh postgres` installs PostgreSQL where missing.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
  echo "pg-cluster: no PostgreSQL here (scripts/setup.sh postgres installs it)" >&2
  exit 1
fi
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi

case "${1:-}" in
  start)
    dir=$2 port=$3
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U crm >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -w -l "$dir/data/server.log" \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null ||
      { tail -20 "$dir/data/server.log" >&2; exit 1; }
    echo "postgres://crm@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir=$2
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
