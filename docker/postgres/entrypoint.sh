#!/bin/sh
# First start: create the cluster, the superuser's password from
# POSTGRES_PASSWORD, and SCRAM for every TCP connection. Every start: run in
# the foreground on 127.0.0.1:$PGPORT (host networking).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
# The superuser's password as docker/secrets.sh kept it (never a published one).
if [ -r /var/lib/masking/secrets/stack.env ]; then
    POSTGRES_PASSWORD=$(sed -n 's/^POSTGRES_PASSWORD=//p' /var/lib/masking/secrets/stack.env)
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "masking-postgres: set POSTGRES_PASSWORD (in .env) before the first start" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" \
        --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
fi
exec postgres -D "$PGDATA" -p "${PGPORT:-5432}" -c listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}" \
    -c unix_socket_directories=/var/run/postgresql
