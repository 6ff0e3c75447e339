#!/usr/bin/env bash
# Regenerate the image's lock files from pyproject.toml, every dependency pinned with the sha256
# of every published file (the Dockerfile installs them with --require-hashes):
#   requirements.lock        the runtime dependencies (the migration image)
#   requirements-lint.lock   the `lint` extra (squawk), for the Dockerfile's `lint` target; pinned
#                            within requirements.lock's pins, so the two never disagree
#
#   scripts/lock-requirements.sh                    keep current pins, add/drop what pyproject.toml changed
#   scripts/lock-requirements.sh --upgrade          move every pin to its newest allowed release
#   scripts/lock-requirements.sh --upgrade-package sqlalchemy
#   scripts/lock-requirements.sh --check            exit 1 if a lock file does not match pyproject.toml
#
# --universal resolves once for every platform and Python >= requires-python, so one lock serves
# the CI base (Debian bookworm, CPython 3.11), python:3.12-slim and arm64 alike; uv lists the hash
# of every wheel and sdist of each pinned release. uv comes from a throwaway venv, at a pinned
# version, so the output never depends on what happens to be installed on the machine.
set -euo pipefail

UV_VERSION=0.13.9
root=$(cd "$(dirname "$0")/.." && pwd)

check=0
args=()
for arg in "$@"; do
    if [[ $arg == --check ]]; then check=1; else args+=("$arg"); fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lock-requirements.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Package downloads go through the machine's CA bundle where there is one (uv reads SSL_CERT_FILE).
if [[ -z ${SSL_CERT_FILE:-} && -r /etc/ssl/certs/ca-certificates.crt ]]; then
    export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"

# compile LOCK INPUT [uv options...]: LOCK compiled into $work, starting from its current pins.
compile() {
    local name=$1 input=$2
    shift 2
    # uv keeps the pins already in the output file unless told to upgrade.
    [[ -f $root/$name ]] && cp "$root/$name" "$work/$name"
    (cd "$root" && "$work/venv/bin/uv" pip compile "$input" \
        --universal \
        --python-version 3.11 \
        --generate-hashes \
        --no-annotate \
        --custom-compile-command "scripts/lock-requirements.sh" \
        --quiet \
        --output-file "$work/$name" \
        "$@" \
        ${args[@]+"${args[@]}"})
}

# The lint extra on its own (the lint target copies squawk alone), read from pyproject.toml.
python3 -c 'import sys, tomllib
extra = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["lint"]
print("\n".join(extra))' "$root/pyproject.toml" >"$work/lint.in"

compile requirements.lock pyproject.toml
compile requirements-lint.lock "$work/lint.in" --constraint "$work/requirements.lock"
locks=(requirements.lock requirements-lint.lock)

if ((check)); then
    stale=0
    for name in "${locks[@]}"; do
        if ! diff -u "$root/$name" "$work/$name"; then
            echo "$name is out of date: run scripts/lock-requirements.sh" >&2
            stale=1
        fi
    done
    ((stale == 0)) || exit 1
    echo "${locks[*]} match pyproject.toml"
else
    # Prove each lock installs the way the Dockerfile installs it (wheels only, every hash
    # checked) for the interpreters and machines the image is built for.
    for python in 3.11 3.12; do
        for arch in x86_64 aarch64; do
            platforms=()
            for tag in manylinux_2_28 manylinux_2_17 manylinux2014; do
                platforms+=(--platform "${tag}_$arch")
            done
            for name in "${locks[@]}"; do
                "$work/venv/bin/python" -m pip download --isolated --quiet --disable-pip-version-check \
                    ${SSL_CERT_FILE:+--cert "$SSL_CERT_FILE"} --no-deps --only-binary=:all: \
                    --require-hashes --implementation cp --python-version "$python" "${platforms[@]}" \
                    --dest "$work/wheels-$python-$arch" -r "$work/$name"
            done
        done
    done
    echo "checked: every pin has a hashed wheel for CPython 3.11 and 3.12 on x86_64 and aarch64"
    for name in "${locks[@]}"; do
        cp "$work/$name" "$root/$name"
        echo "wrote $root/$name: $(grep -c '^[a-z]' "$root/$name") packages"
    done
fi
