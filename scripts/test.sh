#!/usr/bin/env bash
# Install everything the test suite needs, then run it:
#   - PostgreSQL server binaries, PgBouncer and openssl (apt-get, when missing and running as
#     root); the tests start private throwaway clusters with them (openssl makes the TLS test's
#     certificates) and never touch a running server;
#   - a virtualenv at .venv with the project and its test extras.
# Extra arguments go to pytest (e.g. scripts/test.sh -k lock).
set -euo pipefail
cd "$(dirname "$0")/.."

have_tools() {
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -x /usr/sbin/pgbouncer ] &&
        command -v openssl >/dev/null
}
if ! have_tools; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing tools: apt-get install postgresql pgbouncer openssl" >&2
        exit 1
    fi
    echo "installing PostgreSQL server binaries, PgBouncer and openssl with apt-get"
    # Binaries only: no cluster of Debian's own on port 5432.
    mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
        echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postgresql pgbouncer openssl >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

exec .venv/bin/python -m pytest -n 3 "$@"
