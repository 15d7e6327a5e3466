#!/usr/bin/env bash
# Usage: apt-ensure.sh WHO PACKAGE...
# Installs whichever of the Debian packages are missing (apt-get, with sudo when not root) and
# does nothing when all are present; WHO names the caller in the one line it prints.
set -euo pipefail
who=$1
shift

missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "$who: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
