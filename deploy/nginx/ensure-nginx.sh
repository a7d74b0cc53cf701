#!/usr/bin/env bash
# Prints the path of nginx, installing Debian's package first when there is none (needs root).
# The package's own service is not started (policy-rc.d), so nothing listens on port 80.
# Used by tests/deploy/test_scale_out.py; safe to run again.
set -euo pipefail

find_nginx() {
  command -v nginx 2>/dev/null && return 0
  [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx && return 0
  return 1
}

if find_nginx; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "nginx is not installed; as root: apt-get install -y nginx-light" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >&2
# nginx-light is the smallest build (bookworm); later releases only have nginx.
apt-get install -y -qq --no-install-recommends nginx-light >&2 \
  || apt-get install -y -qq --no-install-recommends nginx >&2
find_nginx
