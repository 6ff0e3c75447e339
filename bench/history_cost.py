"""What the run history costs per revision: N trivial revisions with MIGRATE_HISTORY on and off.

    MIGRATE_TEST_TOOLS=/var/tmp/migrate-job-test-tools .venv/bin/python bench/history_cost.py

A private PostgreSQL cluster (tests/pgcluster.py), a generated project of `--revisions` revisions
of one CREATE TABLE each, and for each attempt and mode a fresh database: a first run applies
one revision (so that the schema exists, as on every run but the first), then `upgrade head` is
timed (wall) and its `migration_finished` durations summed (the steps alone). Medians; and,
separately, what creating the schema once and the checks before the first change take.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator.backends.postgresql import BACKEND  # noqa: E402
from migrator.history import open_store  # noqa: E402
from migrator.settings import load_settings  # noqa: E402
from migrator.urls import parse_database_url  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402


def project(directory: Path, count: int) -> Path:
    shutil.copytree(ROOT / "migrations", directory / "migrations", ignore=_only_env)
    shutil.copytree(ROOT / "models", directory / "models")
    shutil.copy(ROOT / "alembic.ini", directory / "alembic.ini")
    versions = directory / "migrations" / "versions"
    versions.mkdir()
    down = None
    for number in range(count):
        revision = f"{number:012x}"
        (versions / f"{revision}_t.py").write_text(
            f'"""t{number}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    op.create_table('t{number}', sa.Column('id', sa.Integer))\n\n\n"
            f"def downgrade():\n    op.drop_table('t{number}')\n"
        )
        down = revision
    return directory / "alembic.ini"


def _only_env(directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name not in ("env.py", "script.py.mako")]


def run(cluster: Cluster, ini: Path, mode: str, first: str) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "DATABASE_"))}
    env.update(
        DATABASE_URL=cluster.url(cluster.create_database()),
        ALEMBIC_CONFIG=str(ini),
        MIGRATE_LOG_FORMAT="json",
        MIGRATE_HISTORY=mode,
        PYTHONPATH=str(ini.parent),
    )
    command = [sys.executable, str(ROOT / "entrypoint.py"), "upgrade"]
    subprocess.run([*command, first], env=env, capture_output=True, check=True, cwd=ini.parent)
    started = time.monotonic()
    done = subprocess.run(
        [*command, "head"], env=env, capture_output=True, text=True, check=True, cwd=ini.parent
    )
    wall = time.monotonic() - started
    events = [json.loads(line) for line in done.stdout.splitlines()]
    steps = [e["duration_s"] for e in events if e["event"] == "migration_finished"]
    return wall, sum(steps), len(steps)


def schema_costs(cluster: Cluster, attempts: int) -> tuple[float, float]:
    """Median seconds: creating the schema once; the checks before a change once it exists."""
    create, check = [], []
    for _ in range(attempts):
        url = cluster.url(cluster.create_database())
        settings = load_settings({"DATABASE_URL": url, "ALEMBIC_CONFIG": str(ROOT / "alembic.ini")})
        raw = BACKEND.connect(parse_database_url(url, source="DATABASE_URL"), 5)
        try:
            started = time.perf_counter()
            open_store(BACKEND, raw, settings, write=True)
            create.append(time.perf_counter() - started)
            started = time.perf_counter()
            store = open_store(BACKEND, raw, settings, write=True)
            assert not isinstance(store, str), store
            store.latest()
            check.append(time.perf_counter() - started)
        finally:
            raw.close()
    return statistics.median(create), statistics.median(check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=8)
    arguments = parser.parse_args()
    cluster = Cluster()
    cluster.start()
    with tempfile.TemporaryDirectory() as directory:
        ini = project(Path(directory), arguments.revisions)
        try:
            found: dict[str, list[tuple[float, float, int]]] = {"off": [], "on": []}
            for _ in range(arguments.attempts):
                for mode in ("off", "on"):
                    found[mode].append(run(cluster, ini, mode, f"{0:012x}"))
            create, check = schema_costs(cluster, arguments.attempts)
        finally:
            cluster.destroy()
    applied = found["on"][0][2]
    for mode, runs in found.items():
        wall = statistics.median(r[0] for r in runs)
        steps = statistics.median(r[1] for r in runs)
        print(f"history {mode}: {applied} revisions, wall {wall:.3f} s, steps {steps:.3f} s")  # noqa: T201
    extra_wall, extra_steps = (
        statistics.median(r[i] for r in found["on"]) - statistics.median(r[i] for r in found["off"])
        for i in (0, 1)
    )
    print(  # noqa: T201
        f"per revision: +{extra_steps / applied * 1000:.2f} ms in the steps, "
        f"+{extra_wall / applied * 1000:.2f} ms wall; creating the schema {create * 1000:.1f} ms "
        f"once; the checks before a change {check * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
