"""SHA-256 without OpenSSL's libcrypto (migrator/digest.py), giving hashlib's digests."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# SHA-256("migrate"), as `printf migrate | sha256sum` gives it
MIGRATE = "3bc801a33ea83df414e1aeb962a52412835be99db28668ec25de73fdd4733804"


def _run(script: str) -> str:
    # -S: no site hooks, so nothing but the script can load hashlib (coverage's .pth would).
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_builtin_sha256_gives_hashlibs_digest_without_loading_openssl() -> None:
    script = (
        "import sys\n"
        "from migrator.digest import sha256\n"
        "chunked = sha256()\nchunked.update(b'mig')\nchunked.update(b'rate')\n"
        "assert '_hashlib' not in sys.modules, 'OpenSSL was loaded'\n"
        "import hashlib\n"
        "assert chunked.digest() == hashlib.sha256(b'migrate').digest()\n"
        "print(chunked.hexdigest())\n"
    )
    assert _run(script) == MIGRATE


def test_a_python_without_the_builtin_module_gets_hashlibs() -> None:
    script = (
        "import sys; sys.modules['_sha2'] = sys.modules['_sha256'] = None\n"
        "import hashlib\n"
        "from migrator.digest import sha256\n"
        "assert sha256 is hashlib.sha256, sha256\n"
        "print(sha256(b'migrate').hexdigest())\n"
    )
    assert _run(script) == MIGRATE
