"""SHA-256 without loading OpenSSL's libcrypto: the one private CPython module the job uses.

`hashlib` imports `_hashlib`, which maps the system's libcrypto: +3.5 MiB of peak RSS (a bare
interpreter 10.6 MiB, after `import hashlib` 14.1 MiB, by ru_maxrss) and ~2.4 ms of CPU on every
run with nothing to do, for hashing a lock name and a few small revision files. That alone takes
the no-op past its 25 MiB budget (bench/RESULTS.md). CPython's built-in SHA-256, the one hashlib
itself falls back to without OpenSSL, is `_sha2` from Python 3.12 and `_sha256` before; both are
tried, and hashlib's is the fallback for a build with neither. tests/test_digest.py checks that
each gives hashlib's digests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import sha256  # the same interface
else:
    try:
        from _sha2 import sha256
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

__all__ = ["sha256"]
