#!/bin/sh
# Run a command with the stack's kept secrets (docker/secrets.sh) and the
# database URLs made from them: the service connects as its least-privileged
# role (masking_app), migrations run as the compose PostgreSQL's superuser
# (docs/security.md). Both on 127.0.0.1: the database takes no other address.
set -eu
set -a
. /var/lib/masking/secrets/stack.env
set +a
port=${POSTGRES_PORT:-5432}
export MASKING_DATABASE_ADMIN_URL="postgresql://postgres:${POSTGRES_PASSWORD}@127.0.0.1:${port}/masking"
export MASKING_DATABASE_URL="postgresql://masking_app:${MASKING_APP_DB_PASSWORD}@127.0.0.1:${port}/masking"
unset POSTGRES_PASSWORD MASKING_APP_DB_PASSWORD
exec "$@"
