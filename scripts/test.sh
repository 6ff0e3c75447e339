#!/usr/bin/env bash
# Install what the test suite needs, then run it:
#   - PostgreSQL server binaries, PgBouncer and openssl, when missing (as root only, and said
#     before it is done; MIGRATE_TEST_NO_INSTALL=1 stops there instead). The tests start private
#     throwaway clusters with them (openssl makes the TLS test's certificates) and never touch a
#     running server;
#   - MariaDB's server binaries and Galera's provider library, when missing, the same way (for
#     the MySQL backend's tests, which start private MariaDB servers and one Galera node);
#   - a virtualenv at .venv with the project and its test extras.
# Extra arguments go to pytest (e.g. scripts/test.sh -k lock).
#
# The suite runs under coverage.py and ends with the branch coverage of migrator/, the job's own
# subprocesses included (pyproject.toml's [tool.coverage.*]); with extra arguments, of the tests
# that ran. MIGRATE_TEST_COVERAGE=0 runs plain pytest instead.
#
# No configuration file of the machine is written. Debian's postgresql-<version> package creates
# and starts a cluster on port 5432 from its install script unless create_main_cluster is off in
# /etc/postgresql-common/createcluster.conf, and pgbouncer's starts a pgbouncer service. So these
# two packages are not installed: their files are unpacked (dpkg-deb -x) into MIGRATE_TEST_TOOLS,
# where tests/pgcluster.py finds them, and only their dependencies (libraries, and
# postgresql-common, which adds the `postgres` user the servers run as) are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Outside the checkout: the servers run as the postgres user, who cannot enter /root.
tools=${MIGRATE_TEST_TOOLS:-/var/tmp/migrate-job-test-tools}

have_tools() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ||
        compgen -G "$tools/usr/lib/postgresql/*/bin/initdb" >/dev/null || return 1
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] ||
        [ -x "$tools/usr/sbin/pgbouncer" ] || return 1
    command -v openssl >/dev/null
}

# Past the notice: stop here unless root and allowed; otherwise refresh apt's lists (once).
start_installing() {
    if [ "$(id -u)" -ne 0 ] || [ -n "${MIGRATE_TEST_NO_INSTALL:-}" ]; then
        echo "scripts/test.sh: not installing (not root, or MIGRATE_TEST_NO_INSTALL is set)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    [ -n "${apt_updated:-}" ] || { apt-get update -qq && apt_updated=1; }
}

downloads=()
trap 'rm -rf "${downloads[@]}"' EXIT

# unpack EXTRA EXCLUDED PACKAGE...: install what the packages depend on (plus EXTRA, minus the
# dependency named EXCLUDED), then unpack the packages themselves into $tools, uninstalled.
unpack() {
    local extra=$1 excluded=$2 debs depends
    shift 2
    debs=$(mktemp -d)
    downloads+=("$debs")
    chown _apt "$debs" 2>/dev/null || true # apt-get download runs as the _apt user
    (cd "$debs" && apt-get download -qq "$@")
    depends=$(for deb in "$debs"/*.deb; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' |
        sed 's/^ *//' | { if [ -n "$excluded" ]; then grep -v "^$excluded\b"; else cat; fi } |
        { [ -n "$extra" ] && echo "$extra"; cat; } | paste -sd, -)
    apt-get satisfy -y -qq --no-install-recommends "$depends" >/dev/null
    mkdir -p "$tools"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$tools"; done
}

if ! have_tools; then
    cat >&2 <<EOF
scripts/test.sh: the tests need PostgreSQL server binaries, PgBouncer and openssl; some are missing.
As root, this script now runs:
  apt-get update
  apt-get download postgresql-<version> pgbouncer     (into a temporary directory)
  apt-get satisfy --no-install-recommends "openssl, <what those two packages depend on>"
  dpkg-deb -x <each of the two packages> $tools
The two packages themselves are unpacked, not installed: installed, they would create and start a
PostgreSQL cluster on port 5432 and a pgbouncer service. No configuration file is changed.
Set MIGRATE_TEST_NO_INSTALL=1 to stop here instead, or install the tools yourself.
EOF
    start_installing
    # The version the `postgresql` metapackage stands for (15 on Debian 12).
    version=$(apt-cache depends postgresql | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p')
    [ -n "$version" ] || { echo "scripts/test.sh: no postgresql-<version> package found" >&2; exit 1; }
    unpack "openssl" "" "postgresql-$version" pgbouncer
    echo "scripts/test.sh: PostgreSQL $version and PgBouncer unpacked into $tools" >&2
fi

# MariaDB, for the MySQL backend's tests (tests/mariadb.py starts private servers on free ports).
# mariadb-server-core and mariadb-client-core hold mariadbd, mariadb-install-db and
# my_print_defaults; they are unpacked beside the PostgreSQL binaries rather than installed, so
# that no package state changes. `mariadb-server` itself (which creates and starts a server on
# port 3306) is never installed. Their dependency mariadb-common is left out: it only points
# /etc/mysql/my.cnf somewhere, and the test servers read no option file (--no-defaults).
have_mariadb() {
    { [ -x /usr/sbin/mariadbd ] && [ -x /usr/bin/mariadb-install-db ]; } ||
        { [ -x "$tools/usr/sbin/mariadbd" ] && [ -x "$tools/usr/bin/mariadb-install-db" ]; }
}

if ! have_mariadb; then
    cat >&2 <<EOF
scripts/test.sh: the MySQL backend's tests need MariaDB's server binaries; they are missing.
As root, this script now runs:
  apt-get update
  apt-get download mariadb-server-core mariadb-client-core     (into a temporary directory)
  apt-get satisfy --no-install-recommends "<what those two depend on, but mariadb-common>"
  dpkg-deb -x <each of the two packages> $tools
  useradd --system mysql     (only when there is no mysql user: the test servers run as it)
No server is installed or started, and no configuration file is changed.
Set MIGRATE_TEST_NO_INSTALL=1 to stop here instead, or install the tools yourself.
EOF
    start_installing
    unpack "" mariadb-common mariadb-server-core mariadb-client-core
    id mysql >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mysql
    echo "scripts/test.sh: MariaDB's server binaries unpacked into $tools" >&2
fi

# Galera's provider library, for the test that runs the job against a real Galera node
# (tests/mariadb.py starts a private single-node cluster with it). galera-4 is unpacked rather
# than installed, as above, so that no package state changes; the tests look for the library in
# /usr/lib/galera, then in $tools/usr/lib/galera.
have_galera() {
    [ -e /usr/lib/galera/libgalera_smm.so ] || [ -e "$tools/usr/lib/galera/libgalera_smm.so" ]
}

if ! have_galera; then
    cat >&2 <<EOF
scripts/test.sh: the Galera test needs Galera's provider library (libgalera_smm.so); it is missing.
As root, this script now runs:
  apt-get update
  apt-get download galera-4     (into a temporary directory)
  apt-get satisfy --no-install-recommends "<what galera-4 depends on>"
  dpkg-deb -x <the package> $tools
No server is installed or started, and no configuration file is changed.
Set MIGRATE_TEST_NO_INSTALL=1 to stop here instead, or install the tools yourself.
EOF
    start_installing
    unpack "" "" galera-4
    echo "scripts/test.sh: Galera's provider library unpacked into $tools" >&2
fi
export MIGRATE_TEST_TOOLS=$tools

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "${MIGRATE_TEST_COVERAGE:-1}" = 0 ]; then
    exec .venv/bin/python -m pytest -n 3 "$@"
fi
.venv/bin/python -m coverage erase
status=0
.venv/bin/python -m coverage run -m pytest -n 3 "$@" || status=$?
# The tests' status is the script's. When they passed, a figure that cannot be computed is a
# failure too; when they did not (or none ran, pytest's 5), the figure is only a best effort.
if [ "$status" -eq 0 ]; then
    .venv/bin/python -m coverage combine -q
    .venv/bin/python -m coverage report
else
    .venv/bin/python -m coverage combine -q && .venv/bin/python -m coverage report || true
fi
exit "$status"
