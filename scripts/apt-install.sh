#!/usr/bin/env bash
# Install Debian packages (as root) without starting their services: Debian's coturn and redis-server would
# otherwise start servers of their own (coturn on every interface, port 3478). The tests and lessons start their
# own, on loopback, when they need one.
set -euo pipefail
policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    exit 0
fi
# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; exit code 101 means "do not".
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"
trap 'rm -f "$policy"' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
