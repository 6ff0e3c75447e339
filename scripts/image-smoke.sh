#!/usr/bin/env bash
# Build the image and run it for real, the way an orchestrator would: podman + runc, a read-only
# root filesystem, no capabilities, no-new-privileges, UID 10001, against a throwaway PostgreSQL.
#
#   scripts/image-smoke.sh            (as root; CI calls it from .ci/run)
#
# Environment:
#   PYTHON               python with the project's dependencies, for the throwaway PostgreSQL
#                        (tests/pgcluster.py); default .venv/bin/python (made by scripts/test.sh)
#   IMAGE_SMOKE_CACHE    directory that keeps the base image's root filesystem between runs
#                        (one ~175 MB tarball, rebuilt after 7 days); default
#                        /var/tmp/migrate-job-smoke-cache; "off" = build it every time
#   IMAGE_SMOKE_KEEP=1   keep the work directory (podman state, logs) for a post-mortem
#
# What it does: installs podman and friends if missing; makes a local Debian bookworm base image
# with mmdebstrap (nothing can be pulled here); builds the Dockerfile on it (and its lint target);
# checks the image's size and contents; runs lint in both images; runs upgrade / no-op / current / bad URLs / SIGTERM / await-head against
# PostgreSQL; runs compose.yaml's migrate service with podman-compose against its db service;
# prints a table of phases and timings; removes everything it made (all podman state lives in a
# work directory of its own). A machine that cannot run containers is a failure, never a pass.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$root/.venv/bin/python}
cache=${IMAGE_SMOKE_CACHE:-/var/tmp/migrate-job-smoke-cache}
image=localhost/migrate-job:smoke
lint_image=localhost/migrate-job:smoke-lint
base=localhost/migrate-job-base:bookworm
pg_image=localhost/migrate-job-postgres:smoke
project=migratesmoke$$
max_added_bytes=50000000 # 50 MB on top of the base image
podman_compose_version=1.6.0

work=$(mktemp -d /var/tmp/migrate-job-smoke.XXXXXX)
log=$work/log
mkdir -p "$log"

# --- reporting ------------------------------------------------------------------------------
phases=()
failed=""
started_all=$EPOCHREALTIME

say() { printf '[image-smoke] %s\n' "$*" >&2; }

fail() {
    failed="$*"
    printf '\n[image-smoke] FAILED: %s\n' "$*" >&2
    exit 1
}

# phase NAME COMMAND...: run a step, time it, record it in the summary; any failure is fatal.
phase() {
    local name=$1 start status=ok
    shift
    say "== $name"
    start=$EPOCHREALTIME
    # Called in an || list, so errexit is off inside: every step below checks its own commands.
    "$@" || status=FAILED
    phases+=("$(printf '%-44s %8.1f  %s' "$name" "$(elapsed "$start")" "$status")")
    [[ $status == ok ]] || fail "$name (details above; IMAGE_SMOKE_KEEP=1 keeps $work and its logs)"
}

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

notes=()
note() { notes+=("$*"); say "$*"; }

summary() {
    printf '\n%-44s %8s  %s\n' "image smoke: phase" "seconds" "result"
    printf '%s\n' "${phases[@]}"
    printf '%-44s %8.1f\n' "total" "$(elapsed "$started_all")"
    ((${#notes[@]} == 0)) || printf '%s\n' "${notes[@]}"
    if [[ -n $failed ]]; then
        printf 'IMAGE SMOKE FAILED: %s\n' "$failed"
    else
        printf 'image smoke: all checks passed\n'
    fi
}

# --- cleanup --------------------------------------------------------------------------------
pg_pid=""
podman_ready=0
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [[ -z $failed && $rc -ne 0 ]] && failed="exit code $rc"
    summary
    if [[ -n $pg_pid ]]; then
        kill -TERM "$pg_pid" 2>/dev/null
        wait "$pg_pid" 2>/dev/null
    fi
    if ((podman_ready)); then
        [[ -x $work/tools/bin/podman-compose ]] && compose down --volumes >"$log/compose-down" 2>&1
        podman rm --all --force --time 0 >/dev/null 2>&1
        podman network rm --force "${project}_default" >/dev/null 2>&1
        rm -rf "/var/lib/cni/networks/${project}_default"
        if [[ ${IMAGE_SMOKE_KEEP:-0} != 1 ]]; then
            podman system reset --force >/dev/null 2>&1
        fi
    fi
    if [[ ${IMAGE_SMOKE_KEEP:-0} == 1 ]]; then
        say "kept $work (podman: source $work/env)"
    else
        # Overlay mounts left by an interrupted podman would make rm fail halfway.
        findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r umount -l 2>/dev/null
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# --- machine --------------------------------------------------------------------------------
install_packages() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v iptables >/dev/null || missing+=(iptables)
    [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
    [[ -x /usr/lib/cni/dnsname ]] || missing+=(golang-github-containernetworking-plugin-dnsname)
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    if ((${#missing[@]} == 0)); then
        say "podman $(podman --version | awk '{print $3}'), runc, mmdebstrap: present"
        return 0
    fi
    if ((EUID != 0)); then
        say "missing packages: ${missing[*]} (and not root, so they cannot be installed here)"
        return 1
    fi
    say "installing: ${missing[*]}"
    # PostgreSQL's binaries only (as scripts/test.sh does): no Debian cluster of its own on 5432.
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        mkdir -p /etc/postgresql-common
        grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
            echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
    fi
    # shellcheck disable=SC2015 # either step failing is the same failure
    apt-get update -qq >"$log/apt" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >>"$log/apt" 2>&1 || { tail -20 "$log/apt" >&2; return 1; }
}

# Podman's state lives in $work; without runc and explicit ulimits every run fails on this kind
# of machine (setrlimit RLIMIT_NOFILE, "cgroups in hybrid mode not supported").
configure_podman() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [[ $nofile == unlimited ]] && nofile=1048576
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
    mkdir -p "$work"/{storage,runroot,libpod,tmp,net} || return 1
    cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/runroot"
EOF
    cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
tmp_dir = "$work/libpod"
[network]
network_config_dir = "$work/net"
EOF
    cat >"$work/env" <<EOF
export CONTAINERS_STORAGE_CONF=$work/storage.conf CONTAINERS_CONF=$work/containers.conf TMPDIR=$work/tmp
EOF
    # shellcheck source=/dev/null
    source "$work/env"
    podman_ready=1
    say "podman state in $work"
    podman info >"$log/podman-info" 2>&1 || { cat "$log/podman-info" >&2; return 1; }
}

podman_compose_tool() {
    # shellcheck disable=SC2015 # either step failing is the same failure
    python3 -m venv "$work/tools" &&
        "$work/tools/bin/python" -m pip install -q --disable-pip-version-check \
            "podman-compose==$podman_compose_version" >"$log/pip-tools" 2>&1 ||
        { cat "$log/pip-tools" >&2; return 1; }
}

# --- base image -----------------------------------------------------------------------------
# Debian bookworm (CPython 3.11) from Debian's mirror, with the machine's CA certificates so pip
# can reach PyPI from inside the build. merged-usr keeps it ~50 MB smaller. The hooks' "$1" is
# mmdebstrap's, expanded by the shell it runs them in.
# shellcheck disable=SC2054,SC2016
base_recipe=(
    --mode=root --variant=minbase --format=tar
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --include=python3,python3-venv,ca-certificates
    "--dpkgopt=path-exclude=/usr/share/{man,doc,locale,info}/*"
    '--customize-hook=cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true; env -u TMPDIR chroot "$1" update-ca-certificates'
    '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
    bookworm
)

base_image() {
    local key tarball
    key=$(printf '%s\n' "${base_recipe[@]}" | cat - /usr/local/share/ca-certificates/*.crt 2>/dev/null |
        sha256sum | cut -c1-16)
    if [[ $cache == off ]]; then
        tarball=$work/base.tar
    else
        mkdir -p "$cache"
        tarball=$cache/base-$key.tar
        # Rebuilt weekly: the base must not miss Debian's security updates for long.
        find "$cache" -maxdepth 1 -name 'base-*.tar' \( -mtime +6 -o ! -name "base-$key.tar" \) -delete
    fi
    if [[ -s $tarball ]]; then
        note "base image: root filesystem from the cache ($tarball)"
    else
        mmdebstrap "${base_recipe[@]}" "$tarball.tmp" http://deb.debian.org/debian \
            >"$log/mmdebstrap" 2>&1 || { tail -30 "$log/mmdebstrap" >&2; rm -f "$tarball.tmp"; return 1; }
        mv "$tarball.tmp" "$tarball"
    fi
    podman import -q \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' "$tarball" "$base" >/dev/null
}

# Fails loudly if this machine cannot start a container at all.
can_run_containers() {
    local out
    if ! out=$(timeout 60 podman run --rm --network host "$base" python3 -c 'print("ok")' 2>&1) ||
        [[ $out != ok ]]; then
        printf '%s\n' "$out" >&2
        say "THIS MACHINE CANNOT RUN CONTAINERS: the image cannot be verified here"
        return 1
    fi
}

# --- the image ------------------------------------------------------------------------------
build_image() {
    local version revision source
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -1)
    revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    source=$(git -C "$root" remote get-url origin 2>/dev/null || echo unknown)
    timeout 600 podman build --format docker --pull=never --network host \
        --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
        -t "$image" "$root" >"$log/build" 2>&1 || { tail -40 "$log/build" >&2; return 1; }
}

# The lint target: the same stages (cached) plus squawk's binary.
build_lint_image() {
    timeout 600 podman build --format docker --pull=never --network host \
        --build-arg "BASE_IMAGE=$base" --target lint -t "$lint_image" "$root" \
        >"$log/build-lint" 2>&1 || { tail -40 "$log/build-lint" >&2; return 1; }
}

sizes() {
    local size base_size added
    size=$(podman image inspect --format '{{.Size}}' "$image") || return 1
    base_size=$(podman image inspect --format '{{.Size}}' "$base") || return 1
    added=$((size - base_size))
    note "$(printf 'image size: %.1f MB; base: %.1f MB; added by the Dockerfile: %.1f MB (limit %.0f MB)' \
        "$(mb "$size")" "$(mb "$base_size")" "$(mb "$added")" "$(mb "$max_added_bytes")")"
    podman history --format '{{.Size}}	{{.CreatedBy}}' "$image" | grep -v '^0 B' | cut -c1-110 |
        sed 's/^/[image-smoke]   layer: /' >&2
    ((added <= max_added_bytes)) || { say "the Dockerfile adds more than the limit"; return 1; }
}

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }

# Configuration and files: the image is what the Dockerfile promises.
contents() {
    local config
    config=$(podman image inspect --format \
        '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Config.WorkingDir}}' "$image") ||
        return 1
    [[ $config == '10001:10001|["/opt/venv/bin/python","/app/entrypoint.py"]|["upgrade","head"]|/app' ]] ||
        { say "unexpected image config: $config"; return 1; }
    for label in source version revision description licenses; do
        podman image inspect --format "{{index .Labels \"org.opencontainers.image.$label\"}}" "$image" |
            grep -q . || { say "label org.opencontainers.image.$label missing"; return 1; }
    done
    podman run --rm --network none --read-only --read-only-tmpfs=false --entrypoint /bin/sh \
        "$image" -ec '
        test "$(id -u):$(id -g)" = 10001:10001
        test "$(ls -A /app | sort | tr "\n" " ")" = "alembic.ini entrypoint.py migrations migrator models "
        ! grep -q "^app:.*:/bin/.*sh$" /etc/passwd
        for f in $(find /app /opt/venv); do if test -w "$f"; then echo "writable: $f"; exit 1; fi; done
        for tool in pip pip3 gcc cc; do if command -v "$tool"; then echo "found $tool"; exit 1; fi; done
        /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in (\"pip\", \"setuptools\", \"wheel\", \"pytest\")))"
        if python3 -m pip --version >/dev/null 2>&1; then echo "base pip still there"; exit 1; fi
        test -z "$(find / -xdev \( -name tests -path "/app/*" -o -name "*.pyc" -path "/root/*" \) -print -quit)"
        test ! -e /root/.cache
        if command -v squawk || test -e /opt/venv/bin/squawk; then echo "squawk in the migration image"; exit 1; fi
    ' >"$log/contents" 2>&1 || { cat "$log/contents" >&2; return 1; }
}

# --- PostgreSQL (tests/pgcluster.py: scram auth, 127.0.0.1, its own port) ------------------
start_postgres() {
    [[ -x $PYTHON ]] || { say "PYTHON=$PYTHON not found: run scripts/test.sh (makes .venv) or set PYTHON"; return 1; }
    cat >"$work/pg.py" <<'EOF'
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.pgcluster import Cluster

signals = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
parent = os.getppid()
cluster = Cluster()
try:
    cluster.start()
    name = cluster.create_database()
    info = {
        "url": cluster.url(name),
        "derived_url": cluster.url(cluster.create_database()),
        "url_postgres_scheme": cluster.url(name, scheme="postgres"),
        "wrong_password": cluster.url(name, password="not-the-password"),
        "missing_database": cluster.url("no_such_database"),
    }
    with open(sys.argv[2] + ".tmp", "w") as out:
        json.dump(info, out)
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    while os.getppid() == parent and signal.sigtimedwait(signals, 1.0) is None:
        pass
finally:
    cluster.destroy()
EOF
    # Its data directory must be reachable by the postgres user: not under $work (0700).
    TMPDIR=/tmp "$PYTHON" "$work/pg.py" "$root" "$work/pg.json" >"$log/postgres" 2>&1 &
    pg_pid=$!
    for _ in $(seq 600); do
        [[ -s $work/pg.json ]] && break
        kill -0 "$pg_pid" 2>/dev/null || { cat "$log/postgres" >&2; return 1; }
        sleep 0.1
    done
    [[ -s $work/pg.json ]] || { say "PostgreSQL did not start in 60 s"; return 1; }
    url=$(pg_field url)
}

pg_field() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/pg.json" "$1"; }

# --- runs -----------------------------------------------------------------------------------
hardened=(--network host --read-only --read-only-tmpfs=false --cap-drop ALL
    --security-opt no-new-privileges --user 10001:10001)

# run NAME EXPECTED_CODE [podman options...] -- [image args...]: one container of $image (or
# $run_image), its stdout and stderr kept in $log/NAME.out / .err, the exit code compared.
run() {
    local name=$1 expected=$2 options=() code=0
    shift 2
    while [[ $1 != -- ]]; do options+=("$1"); shift; done
    shift
    timeout 120 podman run --rm --name "$project-$name" "${hardened[@]}" ${options[@]+"${options[@]}"} \
        "${run_image:-$image}" "$@" >"$log/$name.out" 2>"$log/$name.err" || code=$?
    if [[ $code != "$expected" ]]; then
        say "$name: exit code $code, expected $expected"
        cat "$log/$name.out" "$log/$name.err" >&2
        return 1
    fi
}

# json_lines NAME PYTHON_EXPRESSION: stdout is JSON objects only, one a line, nothing on stderr,
# and the expression holds for `events` (the list of parsed lines) and `last` (the final event).
json_lines() {
    "$PYTHON" - "$log/$1.out" "$log/$1.err" "$2" <<'EOF' || { cat "$log/$1.out" "$log/$1.err" >&2; return 1; }
import json, os, sys
out, err, expression = sys.argv[1:]
lines = open(out).read().splitlines()
events = [json.loads(line) for line in lines]
assert events and all(isinstance(event, dict) for event in events), "not JSON objects"
assert os.environ.get("JSON_LINES_STDERR") == "any" or open(err).read() == "", "stderr is not empty"
last = events[-1]
assert eval(f"({expression})"), f"{expression} is false for the last event {last}"
EOF
}

check_upgrade() {
    run upgrade 0 -e "DATABASE_URL=$url" -- &&
        json_lines upgrade 'last["event"] == "finished" and last["applied"] >= 1'
}

check_noop() {
    # postgres:// (the other spelling) must work as well.
    run noop 0 -e "DATABASE_URL=$(pg_field url_postgres_scheme)" -- upgrade head &&
        json_lines noop 'last["event"] == "finished" and last["applied"] == 0' || return 1
    # The image's heads.json is fresh (migrator/heads.py): the no-op never loads SQLAlchemy.
    run noop-imports 0 -e "DATABASE_URL=$(pg_field url_postgres_scheme)" \
        -e PYTHONPROFILEIMPORTTIME=1 -- upgrade head || return 1
    if ! grep -q 'migrator.commands' "$log/noop-imports.err" ||
        grep -q 'sqlalchemy' "$log/noop-imports.err"; then
        say "the no-op took Alembic's full path: heads.json missing or stale?"
        return 1
    fi
    # ...and stays as lean in the image's Python as tests/test_fast_path.py checks here.
    local avoided
    avoided=$(grep -E '\| +(pathlib|dataclasses|tenacity|structlog|_hashlib)$' \
        "$log/noop-imports.err" || true)
    if [ -n "$avoided" ]; then
        say "the no-op imported modules it avoids on purpose: $avoided"
        return 1
    fi
}

head=""  # set by check_current, the example's head revision
check_current() {
    run heads 0 -- heads && json_lines heads 'last["event"] == "finished"' || return 1
    head=$("$PYTHON" - "$log/heads.out" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
print(" ".join(head["revision"] for e in events if e["event"] == "heads" for head in e["heads"]))
PY
    ) || return 1
    [[ $head =~ ^[0-9a-f]+$ ]] || { say "heads reported no single revision: '$head'"; return 1; }
    note "head revision: $head"
    run current 0 -e "DATABASE_URL=$url" -- current &&
        json_lines current "last['event'] == 'finished' and last['revisions_after'] == ['$head'] and
            any(e['event'] == 'current' and e['current'] == ['$head'] for e in events)"
}

check_bad_url() {
    run bad-password 2 -e "DATABASE_URL=$(pg_field wrong_password)" -e MIGRATE_WAIT_TIMEOUT=10 -- &&
        json_lines bad-password 'last["event"] == "failed" and last["exit_code"] == 2' &&
        run bad-scheme 2 -e "DATABASE_URL=nosuchdb://x@127.0.0.1/db" -- &&
        json_lines bad-scheme 'last["event"] == "failed" and last["exit_code"] == 2' &&
        run missing-database 2 -e "DATABASE_URL=$(pg_field missing_database)" -e MIGRATE_WAIT_TIMEOUT=10 -- &&
        json_lines missing-database 'last["event"] == "failed" and last["exit_code"] == 2'
}

# SIGTERM to the container (PID 1 is the runner) while it waits for a database that is not there.
check_sigterm() {
    local pid code=0 start seconds name=$project-sigterm
    podman run --rm --name "$name" "${hardened[@]}" \
        -e DATABASE_URL=postgresql://nobody:x@127.0.0.1:1/nothing -e MIGRATE_WAIT_TIMEOUT=60 \
        "$image" >"$log/sigterm.out" 2>"$log/sigterm.err" &
    pid=$!
    for _ in $(seq 100); do
        [[ $(podman inspect --format '{{.State.Status}}' "$name" 2>/dev/null) == running ]] && break
        sleep 0.1
    done
    sleep 2
    start=$EPOCHREALTIME
    podman kill --signal TERM "$name" >/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    seconds=$(elapsed "$start")
    if kill -0 "$pid" 2>/dev/null; then
        say "still running 10 s after SIGTERM"
        podman kill "$name" >/dev/null 2>&1
    fi
    wait "$pid" || code=$?
    note "SIGTERM: exit code $code, ${seconds} s after the signal"
    [[ $code == 143 ]] && awk -v s="$seconds" 'BEGIN { exit !(s < 5) }' &&
        json_lines sigterm 'last["event"] == "failed" and last["exit_code"] == 143'
}

check_await_head() {
    run await-head 0 -e "DATABASE_URL=$url" -- await-head &&
        json_lines await-head 'last["event"] == "finished"'
}

# lint in the migration image: no squawk there, so one failed event (exit 2) naming the target.
check_lint_runtime() {
    run lint-runtime 2 -- lint &&
        json_lines lint-runtime 'last["event"] == "failed" and last["exit_code"] == 2 and
            "--target lint" in last["message"]'
}

lint_sizes() {
    local size runtime_size
    size=$(podman image inspect --format '{{.Size}}' "$lint_image") || return 1
    runtime_size=$(podman image inspect --format '{{.Size}}' "$image") || return 1
    note "$(printf 'lint image size: %.1f MB; squawk adds %.1f MB to the migration image' \
        "$(mb "$size")" "$(mb "$((size - runtime_size))")")"
    [[ $(podman image inspect --format '{{json .Config.Cmd}}' "$lint_image") == '["lint"]' ]] ||
        { say "the lint image's command is not lint"; return 1; }
}

# The lint image on its own example (its default command), then on a project mounted read-only
# the way README's CI recipe mounts one: the example plus a revision with a plain CREATE INDEX on
# an existing table.
check_lint_image() {
    local dir=$work/lint-project
    run_image=$lint_image run lint-example 0 -- &&
        json_lines lint-example 'last["event"] == "finished" and
            any(e["event"] == "lint_summary" and e["findings"] == 0 and len(e["revisions"]) >= 5
                for e in events)' || return 1
    mkdir -p "$dir" && cp -r "$root/alembic.ini" "$root/migrations" "$root/models" "$dir/" || return 1
    [[ $head =~ ^[0-9a-f]+$ ]] || { say "no head revision from check_current"; return 1; }
    cat >"$dir/migrations/versions/badbad000001_smoke_index.py" <<PY
from alembic import op

revision = "badbad000001"
down_revision = "$head"


def upgrade():
    op.create_index("ix_accounts_smoke", "accounts", ["display_name"])


def downgrade():
    op.drop_index("ix_accounts_smoke", table_name="accounts")
PY
    run_image=$lint_image run lint-bad 8 -v "$dir:/src:ro" -w /src \
        -e ALEMBIC_CONFIG=/src/alembic.ini -- lint --since "$head" &&
        json_lines lint-bad 'last["event"] == "failed" and last["exit_code"] == 8 and
            [(e["revision"], e["rule"], e["line"]) for e in events if e["event"] == "lint_finding"]
            == [("badbad000001", "require-concurrent-index-creation", 8)]'
}

# An arbitrary UID without a passwd entry (OpenShift's restricted SCC does this).
check_other_uid() {
    local saved=("${hardened[@]}") code=0
    hardened=("${hardened[@]/10001:10001/1000770000:0}")
    run other-uid 0 -e "DATABASE_URL=$url" -- current || code=$?
    hardened=("${saved[@]}")
    ((code == 0)) && json_lines other-uid 'last["event"] == "finished"'
}

# Nothing written at run time: a run on a writable root filesystem, bytecode writing allowed
# (PYTHONDONTWRITEBYTECODE unset), leaves `podman diff` empty, so every pyc was valid.
check_no_writes() {
    local name=$project-nowrites changes=""
    podman run --name "$name" --network host --user 10001:10001 -e PYTHONDONTWRITEBYTECODE= \
        -e "DATABASE_URL=$url" "$image" upgrade head >"$log/nowrites.out" 2>&1 ||
        { cat "$log/nowrites.out" >&2; return 1; }
    # podman's own mount points for /etc/hosts, /etc/resolv.conf, ... are not the job's writes.
    changes=$(podman diff "$name") || return 1
    changes=$(grep -Ev '^[AC] /(etc|run)(/(hosts|hostname|resolv\.conf|\.containerenv))?$' <<<"$changes")
    podman rm "$name" >/dev/null
    [[ -z $changes ]] || { say "files written at run time:"; printf '%s\n' "$changes" >&2; return 1; }
}

# README "Use it with your own Alembic project", way 2, verbatim: a derived image of a project the
# job did not write (Alembic's generic template: fileConfig, an engine from sqlalchemy.url, models
# of its own package), still non-root and read-only. Its first run migrates its own scripts; its
# second is the fast no-op (the heads record the recipe makes).
check_derived() {
    local dir=$work/derived durl py
    mkdir -p "$dir/myapp" || return 1
    py=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") || return 1  # absolute, venv kept
    (cd "$dir" && "$py" -m alembic init -t generic migrations >/dev/null) || return 1
    printf 'import sqlalchemy as sa\n\nmetadata = sa.MetaData()\nwidgets = sa.Table("widgets", metadata, sa.Column("id", sa.Integer, primary_key=True))\n' \
        >"$dir/myapp/models.py"
    : >"$dir/myapp/__init__.py"
    sed -i 's/^target_metadata = None$/from myapp.models import metadata as target_metadata/' \
        "$dir/migrations/env.py"
    cat >"$dir/migrations/versions/c0ffee000001_widgets.py" <<'PY'
import sqlalchemy as sa
from alembic import op

revision = "c0ffee000001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("widgets")
PY
    # The recipe: the README's block after the derived-image marker, with this image as its base.
    "$PYTHON" - "$root/README.md" "$image" >"$dir/Containerfile" <<'PY' || return 1
import re, sys, textwrap
text = open(sys.argv[1]).read().split("<!-- derived-image -->", 1)[1]
block = textwrap.dedent(re.search(r"```dockerfile\n(.*?)\n *```", text, re.S).group(1)) + "\n"
print(re.sub(r"^FROM \S+", f"FROM {sys.argv[2]}", block, count=1, flags=re.M), end="")
PY
    grep -q '^COPY migrations/' "$dir/Containerfile" || { say "no recipe found in README"; return 1; }
    timeout 300 podman build --format docker --pull=never --network host -t "$image-derived" "$dir" \
        >"$log/derived-build" 2>&1 || { cat "$log/derived-build" >&2; return 1; }
    durl=$(pg_field derived_url)
    # Alembic's own lines go to stderr, as the project's fileConfig says: not checked here.
    run_image=$image-derived run derived-upgrade 0 -e "DATABASE_URL=$durl" -- &&
        JSON_LINES_STDERR=any json_lines derived-upgrade \
            'last["event"] == "finished" and last["applied"] == 1 and
             last["revisions_after"] == ["c0ffee000001"] and
             not any(e["event"] == "fast_path_unavailable" for e in events)' || return 1
    run_image=$image-derived run derived-noop 0 -e "DATABASE_URL=$durl" -- &&
        json_lines derived-noop '[e["event"] for e in events] ==
            ["starting", "database_ready", "nothing_to_do", "finished"]'
}

# --- compose.yaml: the migrate service, run by podman-compose against a db service -------------
# The db service's postgres:16 cannot be pulled here: a local PostgreSQL image that honours the
# same variables (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE) stands in for it.
postgres_image() {
    mkdir -p "$work/pg-image" || return 1
    cat >"$work/pg-image/entrypoint.sh" <<'EOF'
#!/bin/sh
set -eu
PGDATA=/var/lib/postgresql/data
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    install -o postgres -m 0600 "${POSTGRES_PASSWORD_FILE:?}" /tmp/pwfile
    setpriv --reuid=postgres --regid=postgres --init-groups -- \
        initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile --auth=scram-sha-256 --no-sync >/dev/null
    rm /tmp/pwfile
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\"" |
        setpriv --reuid=postgres --regid=postgres --init-groups -- postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
    postgres -D "$PGDATA" -c listen_addresses='*' -c fsync=off
EOF
    cat >"$work/pg-image/Containerfile" <<EOF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint"]
EOF
    timeout 600 podman build --format docker --pull=never --network host -t "$pg_image" "$work/pg-image" \
        >"$log/pg-image" 2>&1 || { tail -30 "$log/pg-image" >&2; return 1; }
}

compose() {
    MIGRATE_IMAGE=$image timeout 300 "$work/tools/bin/podman-compose" --project-name "$project" \
        -f "$root/compose.yaml" -f "$work/compose.override.yaml" "$@"
}

compose_setup() {
    mkdir -p "$work/secrets" || return 1
    printf '%s' 'compose-Pa55:w@rd' >"$work/secrets/db_password"
    printf '%s' 'postgresql://app:compose-Pa55%3Aw%40rd@db:5432/app' >"$work/secrets/database_url"
    chmod 0644 "$work/secrets/"* || return 1
    cat >"$work/compose.override.yaml" <<EOF
services:
  db:
    image: $pg_image
secrets:
  db_password:
    file: $work/secrets/db_password
  database_url:
    file: $work/secrets/database_url
EOF
}

compose_up() {
    local code=0
    compose_setup || return 1
    compose up --exit-code-from migrate migrate >"$log/compose-up" 2>&1 || code=$?
    podman logs "${project}_migrate_1" >"$log/compose-migrate.out" 2>"$log/compose-migrate.err"
    grep -q "Ignored db condition check" "$log/compose-up" &&
        note "compose: podman $(podman --version | awk '{print $3}') does not enforce service_healthy; the runner's own wait covered the gap"
    [[ $code == 0 ]] || { say "compose up: exit code $code"; tail -40 "$log/compose-up" >&2; return 1; }
    json_lines compose-migrate 'last["event"] == "finished" and last["applied"] >= 1'
}

compose_run() {
    local code=0
    # The db first, so that stdout is the job's alone (run without --no-deps prints the db's name).
    compose up -d db >"$log/compose-db" 2>&1 || { cat "$log/compose-db" >&2; return 1; }
    compose run --rm --no-deps -T migrate >"$log/compose-run.out" 2>"$log/compose-run.err" || code=$?
    [[ $code == 0 ]] || { say "compose run: exit code $code"; cat "$log/compose-run.err" >&2; return 1; }
    json_lines compose-run 'last["event"] == "finished" and last["applied"] == 0'
}

# --- main -----------------------------------------------------------------------------------
phase "install podman and friends" install_packages
phase "configure podman (state in a work dir)" configure_podman
phase "podman-compose $podman_compose_version (own venv)" podman_compose_tool
phase "base image (mmdebstrap bookworm)" base_image
phase "can this machine run containers" can_run_containers
phase "build the Dockerfile" build_image
phase "size (added layers <= 50 MB)" sizes
phase "build the lint target" build_lint_image
phase "lint image: size, command" lint_sizes
phase "contents: user, files, no pip/compilers" contents
phase "PostgreSQL (tests/pgcluster.py)" start_postgres
phase "upgrade head: exit 0, JSON lines only" check_upgrade
phase "second run is a no-op (postgres://)" check_noop
phase "current reports head" check_current
phase "lint in the migration image: exit 2" check_lint_runtime
phase "lint image: example 0, bad revision 8" check_lint_image
phase "bad DATABASE_URL: exit 2" check_bad_url
phase "SIGTERM while waiting: 143, promptly" check_sigterm
phase "await-head: exit 0" check_await_head
phase "arbitrary UID without passwd entry" check_other_uid
phase "nothing written at run time" check_no_writes
phase "derived image: your own Alembic project" check_derived
phase "compose: local PostgreSQL image for db" postgres_image
phase "compose: up --exit-code-from migrate" compose_up
phase "compose: run --rm migrate (no-op)" compose_run
