"""`Record`: typing.NamedTuple's class syntax, without importing `typing` at run time.

Written by hand for speed: importing `typing` costs ~5 ms of CPU, a tenth of a run with nothing
to do, and NamedTuple was all that path used it for (bench/RESULTS.md). Type checkers see
typing.NamedTuple itself. At run time a class written `class Settings(Record): field: type =
default` becomes what typing.NamedTuple makes of it: a collections.namedtuple carrying the class
body's methods, properties and docstring.

Modules on that path write `TYPE_CHECKING = False` / `if TYPE_CHECKING:` for names only their
annotations use: mypy treats that constant as true, and `from __future__ import annotations`
keeps the annotations from being evaluated.
"""

from __future__ import annotations

import collections

__all__ = ["Record"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # What typing.NamedTuple refuses to let a class body override.
    _PROHIBITED = frozenset(
        {
            "__new__",
            "__init__",
            "__slots__",
            "__getnewargs__",
            "_fields",
            "_field_defaults",
            "_make",
            "_replace",
            "_asdict",
            "_source",
        }
    )

    class _RecordType(type):
        def __new__(cls, name: str, bases: tuple[type, ...], body: dict[str, object]) -> type:
            if not bases:  # `Record` itself
                return super().__new__(cls, name, bases, body)
            fields = tuple(body.get("__annotations__", {}))
            if not fields:  # Python 3.14 defers annotations unless the module says otherwise
                raise TypeError(f"{name}: no fields (is `from __future__ import annotations` on?)")
            defaults = [body[field] for field in fields if field in body]
            if any(field in body for field in fields[: len(fields) - len(defaults)]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            record = collections.namedtuple(
                name, fields, defaults=defaults, module=body["__module__"]
            )
            for key, value in body.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"{name}: cannot overwrite NamedTuple attribute {key}")
                if key not in fields:  # a field's default is not a class attribute
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """Subclass it with annotated fields, as typing.NamedTuple."""
