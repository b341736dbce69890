#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the browser tests (tests/pages); idempotent:
# does nothing when both are already installed. Called by `make test` before pytest.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
