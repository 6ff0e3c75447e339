"""The least a waiting runner could do in Python with psycopg2: the concurrency scenario's floor.

    floor_waiter.py LOCK_KEY CHANNEL HEAD        (DATABASE_URL in the environment)

Connects, tries the migration lock (handing it straight back, with the NOTIFY a runner sends,
should it win: the real runner beside it must be the one that migrates), LISTENs, sleeps until
a notification or a second passes, and exits the normal way once the version table holds HEAD.
No argument parsing, no settings, no logging beyond one line, no heads record, no lock holder
lookup. Like bench/floor.py it ends with the interpreter's own teardown, not os._exit: the floor
is a plain Python program, and so is the runner the redesign asks for.

The benchmark starts one runner with fifteen of these beside it: the wall time of that group is
what sixteen runners would take if fifteen of them cost nothing but the interpreter, psycopg2
and their queries. See bench/README.md.
"""

import os
import select
import sys

sys.modules["ssl"] = None  # as the runner loads psycopg2 (migrator/database.py)
import psycopg2  # noqa: E402

key, channel, head = int(sys.argv[1]), sys.argv[2], sys.argv[3]
url = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://", 1)
connection = psycopg2.connect(url)
connection.autocommit = True
cursor = connection.cursor()
cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
if cursor.fetchone()[0]:
    cursor.execute(f"SELECT pg_advisory_unlock(%s), pg_notify('{channel}', '')", (key,))
cursor.execute(f"LISTEN {channel}")
while True:
    try:
        cursor.execute("SELECT version_num FROM alembic_version")
        if cursor.fetchall() == [(head,)]:
            break
    except psycopg2.errors.UndefinedTable:
        pass
    if select.select([connection], [], [], 1.0)[0]:
        connection.poll()
        connection.notifies.clear()
connection.close()
sys.stdout.write('{"event": "nothing_to_do"}\n')
