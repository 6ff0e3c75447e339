"""SHA-256 without OpenSSL's libcrypto, and a whole hashlib for whatever is imported later."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def test_builtin_sha256_matches_and_leaves_the_whole_hashlib_to_later_imports() -> None:
    script = textwrap.dedent(
        """
        import sys
        from migrator.hashing import sha256
        digest = sha256(b"migrate").hexdigest()
        assert "_hashlib" not in sys.modules, "OpenSSL's hashlib was loaded"
        assert "hashlib" not in sys.modules, "the stripped hashlib was left behind"
        import hashlib
        assert "_hashlib" in sys.modules, "a later import gets the OpenSSL-backed module"
        assert hashlib.sha256(b"migrate").hexdigest() == digest
        assert len(hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1)) == 32
        print(digest)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    # SHA-256("migrate"), as `printf migrate | sha256sum` gives it
    assert done.stdout.strip() == "3bc801a33ea83df414e1aeb962a52412835be99db28668ec25de73fdd4733804"
