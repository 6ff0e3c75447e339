"""The floor of a run with nothing to do on MySQL/MariaDB: bench/floor.py with PyMySQL.

    floor_mysql.py        (DATABASE_URL in the environment: mysql://user:password@host:port/db)

Starts the interpreter, imports PyMySQL (the driver the image ships), splits the URL (PyMySQL
takes keywords, not a URL), connects, reads the version table once, writes one line with what
it read and exits the normal way. No settings, no logging, no heads record, no lock.
"""

import os
import sys
from urllib.parse import unquote, urlsplit

import pymysql

url = urlsplit(os.environ["DATABASE_URL"])
connection = pymysql.connect(
    host=url.hostname,
    port=url.port or 3306,
    user=unquote(url.username or ""),
    password=unquote(url.password or ""),
    database=url.path.lstrip("/"),
)
cursor = connection.cursor()
cursor.execute("SELECT version_num FROM alembic_version")
versions = [version for (version,) in cursor.fetchall()]
connection.close()
sys.stdout.write(f'{{"event": "floor", "versions": "{",".join(versions)}"}}\n')
