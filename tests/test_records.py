"""`Record` behaves as typing.NamedTuple does for the classes written with it."""

from __future__ import annotations

import pytest

from migrator.records import Record
from migrator.settings import DatabaseURL, parse_database_url


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    label: str | None = None

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)


def test_fields_defaults_methods_and_docstring() -> None:
    point = Point(3, y=-4)
    assert point == (3, -4, None)
    assert isinstance(point, tuple)
    assert Point._fields == ("x", "y", "label")
    assert Point._field_defaults == {"y": 0, "label": None}
    assert point.norm == 7
    assert point.moved(1) == Point(4, -4)
    assert Point.__doc__ == "A point."
    assert Point.__module__ == __name__
    assert repr(Point(1)) == "Point(x=1, y=0, label=None)"
    assert list(Point.__annotations__) == ["x", "y", "label"]


def test_records_are_immutable_and_missing_fields_are_refused() -> None:
    point = Point(1)
    with pytest.raises(AttributeError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_a_field_without_default_after_one_with_default_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        class Broken(Record):
            a: int = 0
            b: int


def test_a_record_without_fields_is_refused() -> None:
    with pytest.raises(TypeError, match="no fields"):

        class Empty(Record):
            pass


def test_the_tuple_machinery_cannot_be_overridden() -> None:
    with pytest.raises(AttributeError, match="_replace"):

        class Broken(Record):
            a: int

            def _replace(self, **changes: object) -> Broken:
                return self


def test_a_method_the_class_defines_wins_over_the_tuple_one() -> None:
    url = parse_database_url("postgresql://user:s3cret-pw@db/app")
    assert isinstance(url, DatabaseURL)
    assert "s3cret-pw" not in repr(url)
