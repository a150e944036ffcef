#!/usr/bin/env bash
# A headless browser for the rating page's tests (tests/test_rate.py): Debian's `chromium` and the
# matching `chromium-driver` (selenium drives it; selenium itself comes from the `dev` extra).
# Run as root; a no-op when both are installed. Prints the two versions.
#   bash scripts/browser-up.sh
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "browser-up.sh: run as root (it installs chromium with apt-get)" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
fi
chromium --version 2>/dev/null
chromedriver --version
