"""Strict readers for the fields of a decoded TOML document, each failure one line naming the field.

Genesis files and economy files are read the same way: a table may hold only
the fields it knows, a count must be an integer (never a boolean) within
bounds, a required field names itself when missing. Each loader used to carry
its own copy of these readers, and the copies drifted (one listed the allowed
fields on an unknown one, the other did not). A loader binds one
`FieldReader` to its own error type, so its callers still catch what they
always caught.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
MAX_COUNT = 1 << 62


@dataclass(frozen=True)
class FieldReader:
    """Readers that raise `error` with ``"<where>: <what is wrong>"``."""

    error: type[Exception]

    def fail(self, where: str, what: str) -> NoReturn:
        raise self.error(f"{where}: {what}")

    def expected(self, where: str, what: str) -> NoReturn:
        self.fail(where, f"expected {what}")

    def table(self, value: Any, where: str, allowed: Iterable[str]) -> Mapping[str, Any]:
        """A table holding only `allowed` fields; an unknown one is named with what is allowed."""
        if not isinstance(value, dict):
            self.expected(where, "a table")
        known = set(allowed)
        unknown = sorted(set(value) - known)
        if unknown:
            name = f"{where}.{unknown[0]}" if where else unknown[0]  # "" is the document itself
            self.fail(name, f"unknown field (allowed: {', '.join(sorted(known))})")
        return value

    def tables(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.expected(where, "a list of tables")
        return value

    def integer(self, value: Any, where: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.expected(where, f"an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            self.fail(where, f"{value} is outside [{lo}, {hi}]")
        return value

    def number(self, value: Any, where: str, lo: float, hi: float) -> float:
        """A number in (lo, hi]: a rate or a shape parameter, where lo itself means nothing."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.expected(where, f"a number, got {type(value).__name__}")
        if not lo < value <= hi:
            self.fail(where, f"{value} is outside ({lo}, {hi}]")
        return float(value)

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.expected(where, "true or false")
        return value

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(where, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    def required(self, table: Mapping[str, Any], name: str, where: str, parse: Callable[[Any, str], T]) -> T:
        if name not in table:
            self.fail(f"{where}.{name}", "missing")
        return parse(table[name], f"{where}.{name}")

    def unique(
        self, values: Iterable[str], where: str, field: str, show: Callable[[str], str] = repr
    ) -> None:
        """No value twice: the second is named by its index (`where[i].field: duplicate ...`)."""
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                self.fail(f"{where}[{i}].{field}", f"duplicate {show(value)}")
            seen.add(value)
