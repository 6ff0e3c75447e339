"""The floor of a run with nothing to do: the least a Python process can do to find that out.

    floor.py        (DATABASE_URL in the environment)

Starts the interpreter, imports psycopg2 (without Python's ssl module, as the runner loads it),
connects, reads the version table once, writes one line with what it read and exits the normal
way. No argument parsing, no settings, no logging, no heads record, no lock.

The no-op scenario runs it beside the runner and bare Alembic: the runner's no-op is judged as a
ratio to this process's time in the same run, a denominator that moves with the machine and the
server rather than with Alembic's import time. See bench/README.md.
"""

import os
import sys

sys.modules["ssl"] = None  # as the runner loads psycopg2 (libpq has its own TLS)
import psycopg2  # noqa: E402

url = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://", 1)
connection = psycopg2.connect(url)
cursor = connection.cursor()
cursor.execute("SELECT version_num FROM alembic_version")
versions = [version for (version,) in cursor.fetchall()]
connection.close()
# What it read, so that the harness can check that the floor did its query (formatted by hand:
# the floor imports nothing it does not need).
sys.stdout.write(f'{{"event": "floor", "versions": "{",".join(versions)}"}}\n')
