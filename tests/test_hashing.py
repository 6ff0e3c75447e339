"""SHA-256 without OpenSSL's libcrypto, giving hashlib's digests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def test_builtin_sha256_gives_hashlibs_digest_without_loading_openssl() -> None:
    script = textwrap.dedent(
        """
        import sys
        from migrator.hashing import sha256
        digest = sha256(b"migrate").hexdigest()
        assert "_hashlib" not in sys.modules, "OpenSSL's hashlib was loaded"
        import hashlib
        assert hashlib.sha256(b"migrate").hexdigest() == digest
        chunked = sha256()
        chunked.update(b"mig")
        chunked.update(b"rate")
        assert chunked.hexdigest() == digest and chunked.digest() == bytes.fromhex(digest)
        print(digest)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    # SHA-256("migrate"), as `printf migrate | sha256sum` gives it
    assert done.stdout.strip() == "3bc801a33ea83df414e1aeb962a52412835be99db28668ec25de73fdd4733804"


def test_a_python_without_the_builtin_module_gets_hashlibs() -> None:
    script = (
        "import sys; sys.modules['_sha2'] = sys.modules['_sha256'] = None\n"
        "import hashlib\n"
        "from migrator.hashing import sha256\n"
        "assert sha256 is hashlib.sha256, sha256\n"
        "print(sha256(b'migrate').hexdigest())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3bc801a33ea83df414e1aeb962a52412835be99db28668ec25de73fdd4733804"
