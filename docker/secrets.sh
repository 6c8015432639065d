#!/bin/sh
# The compose stack's secrets, made on its first start and kept (issue 13:
# never a published one). For each: the value kept in the `secrets` volume
# from an earlier start; else the one .env gives, when it is strong (16
# characters or more, not a value published in this repository); else a new
# random one. The file is the masking user's alone (0600); every service
# reads it through with-secrets.
set -eu
file=/var/lib/masking/secrets/stack.env
umask 077
touch "$file"

published() {
    case "$1" in
        ""|masking-dev-secret|masking-dev-webhook-secret|change-me|change-me-*|secret|password|masking) return 0 ;;
    esac
    [ "${#1}" -lt 16 ]
}

for name in MASKING_ARI_PASSWORD MASKING_AMI_PASSWORD MASKING_WEBHOOK_SECRET MASKING_AGI_SECRET \
            POSTGRES_PASSWORD MASKING_APP_DB_PASSWORD; do
    grep -q "^$name=" "$file" && continue
    eval "given=\${$name:-}"
    if published "$given"; then
        given=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
        echo "masking-secrets: generated $name (kept in the secrets volume)" >&2
    fi
    printf '%s=%s\n' "$name" "$given" >> "$file"
done
