#!/bin/sh
# Asterisk in the foreground on the rendered configuration; its run, log and
# spool directories are made here because the volume starts empty.
set -eu
I=/var/lib/masking-asterisk
if [ ! -f "$I/etc/asterisk.conf" ]; then
    echo "masking-asterisk: no $I/etc/asterisk.conf: render it first (masking asterisk config)" >&2
    exit 1
fi
mkdir -p "$I/run" "$I/log" "$I/lib" "$I/cache" "$I/spool/recording" "$I/spool/tmp"
rm -f "$I/run/asterisk.ctl" "$I/run/asterisk.pid"
exec asterisk -C "$I/etc/asterisk.conf" -f -n
