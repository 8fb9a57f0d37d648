#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium (the report browser test uses it).
# Idempotent: does nothing when it is already there. Installs with apt-get otherwise (sudo when not root).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

fail() { echo "error: cannot install chromium: $*" >&2; exit 1; }

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (install Debian's 'chromium' package by hand)"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  fail "not root and no password-less sudo (run: sudo apt-get install -y chromium)"
fi
export DEBIAN_FRONTEND=noninteractive
# wait for another apt/dpkg run (a lock held elsewhere) instead of failing at once
APT=(apt-get -q -o DPkg::Lock::Timeout=600)
apt_install() { "${SUDO[@]}" "${APT[@]}" install -y --no-install-recommends chromium fonts-liberation >/tmp/medtorch-install-browser.log 2>&1; }

echo "installing chromium with apt-get (log: /tmp/medtorch-install-browser.log)" >&2
# refresh the package lists only when the package is unknown or the first try fails
if ! apt-cache show chromium >/dev/null 2>&1 || ! apt_install; then
  "${SUDO[@]}" "${APT[@]}" update >/tmp/medtorch-install-browser.log 2>&1 || fail "apt-get update failed (see /tmp/medtorch-install-browser.log)"
  apt_install || fail "apt-get install chromium failed (see /tmp/medtorch-install-browser.log)"
fi
[ -x "$CHROMIUM" ] || fail "$CHROMIUM still missing after apt-get install"
