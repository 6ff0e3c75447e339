"""SHA-256 for the heads record and the lock key, without loading OpenSSL's libcrypto.

`import hashlib` loads `_hashlib`, and with it the system's libcrypto: ~2.5 ms of a run with
nothing to do, for hashing a few small files (psycopg2 carries its own libcrypto, for libpq).
Without `_hashlib`, hashlib uses its built-in SHA-256, the implementation it documents for
builds without OpenSSL: slower per byte (~0.7 ms for the 220 KB of 300 revisions, against
~0.1 ms), far cheaper than loading libcrypto. That stripped hashlib is not left behind in
sys.modules: anything imported later (a revision's own `import hashlib`) gets the whole module,
`pbkdf2_hmac` and all.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # keeps `typing` unimported (see records.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from hashlib import _Hash


def _builtin_sha256() -> Callable[..., _Hash]:
    if "hashlib" in sys.modules or "_hashlib" in sys.modules:  # loaded already: nothing to save
        import hashlib

        return hashlib.sha256
    sys.modules["_hashlib"] = None  # type: ignore[assignment]  # makes `import _hashlib` fail
    try:
        import hashlib

        return hashlib.sha256
    finally:
        del sys.modules["_hashlib"]
        sys.modules.pop("hashlib", None)


sha256 = _builtin_sha256()
