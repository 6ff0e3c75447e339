"""The scripts' heads without Alembic at run time: computed by Alembic when the image is built,
trusted only while the revision files are byte for byte what they were then.

    python -m migrator.heads [path/to/alembic.ini]     # the Dockerfile runs this

The file goes beside env.py. A run that finds it missing or stale (a derived image that adds a
revision, a bind-mounted migrations directory, a checkout) takes Alembic's full path: slower,
never wrong. The heads are never guessed from the files' text: only Alembic, which runs them,
knows what they say.
"""

from __future__ import annotations

import json
import os
import sys

from migrator.digest import sha256
from migrator.ini import AlembicIni, config_files

FILENAME = "heads.json"


def recorded_heads(ini: AlembicIni) -> list[str] | None:
    """The heads Alembic found at build time, if the revision files are still exactly those."""
    files = _revision_files(ini)
    if files is None or ini.script_location is None:
        return None
    try:
        with open(os.path.join(ini.script_location, FILENAME), "rb") as file:
            record = json.loads(file.read())
        if record["digest"] != _digest(files):
            return None
        heads = record["heads"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(heads, list) and heads and all(isinstance(head, str) for head in heads):
        return sorted(heads)
    return None


def why_unrecorded(ini: AlembicIni) -> str:
    """Why `recorded_heads` gave nothing: said once, on the slower path, with the way back."""
    if _revision_files(ini) is None or ini.script_location is None:
        return "a layout only Alembic reads (other version locations, or bytecode-only revisions)"
    if not os.path.exists(os.path.join(ini.script_location, FILENAME)):
        return f"no {FILENAME} beside env.py"
    return f"the revision files changed since {FILENAME} was written"


def write(ini_path: str) -> dict[str, object]:
    """Ask Alembic for the heads and record them with the digest of the files it read."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    ini = AlembicIni.read(ini_path)
    files = _revision_files(ini)
    if files is None or ini.script_location is None:
        reason = "a layout only Alembic reads (see ini.py), or bytecode-only revisions"
        return {"written": False, "reason": reason}
    ini_file, toml_file = config_files(ini_path)
    config = Config(ini_file, toml_file=toml_file)
    heads = sorted(ScriptDirectory.from_config(config).get_heads())
    record = {"heads": heads, "digest": _digest(files), "revisions": len(files)}
    target = os.path.join(ini.script_location, FILENAME)
    temporary = os.path.join(ini.script_location, f".{FILENAME}.{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    os.replace(temporary, target)  # atomic: concurrent writers (test workers) never see half a file
    return {"written": True, "path": target, **record}


def _revision_files(ini: AlembicIni) -> list[str] | None:
    """Every file Alembic would load as a revision; None for layouts only Alembic reads."""
    if ini.script_location is None or ini.other_layout:
        return None
    versions = os.path.join(ini.script_location, "versions")
    try:
        with os.scandir(versions) as entries:
            names = [e.name for e in entries if not e.name.startswith((".#", "__init__"))]
    except OSError:
        return None
    if any(name.endswith((".pyc", ".pyo")) for name in names):
        return None  # sourceless revisions beside the sources
    return [os.path.join(versions, name) for name in sorted(names) if name.endswith(".py")]


def _digest(files: list[str]) -> str:
    """SHA-256 over the files' names and bytes: any added, removed or edited file changes it."""
    digest = sha256()
    for path in files:
        with open(path, "rb") as file:
            content = file.read()
        digest.update(f"{os.path.basename(path)}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    """The build step: one JSON line; exit 1 when Alembic cannot read the scripts."""
    ini = argv[0] if argv else "alembic.ini"
    try:
        report = write(ini)
    except Exception as error:  # a broken script directory fails the build, not the deploy
        report, code = {"written": False, "error": f"{error.__class__.__name__}: {error}"}, 1
    else:
        code = 0
    print(json.dumps({"event": "heads", **report}))  # noqa: T201 - a build step's report
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
