"""SHA-256 for the heads record and the lock key, without loading OpenSSL's libcrypto.

`hashlib` loads `_hashlib`, and with it the system's libcrypto: ~2.5 ms of a run with nothing to
do, for hashing a few small files (psycopg2 carries its own libcrypto, for libpq). CPython's
built-in SHA-256, the one hashlib itself falls back to without OpenSSL, is slower per byte
(~0.7 ms for the 220 KB of 300 revisions, against ~0.1 ms) and far cheaper to load. It is a
private module (`_sha2` from Python 3.12, `_sha256` before); a build without it gets hashlib's.
"""

from __future__ import annotations

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
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
