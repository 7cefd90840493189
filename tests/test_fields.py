"""The strict field readers every file loader shares: one line naming the field, in the loader's error."""

from __future__ import annotations

from typing import Any

import pytest

from node.core.fields import FieldReader


class DocError(ValueError):
    pass


READ = FieldReader(DocError)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: READ.table({"a": 1, "zz": 2}, "doc", {"a", "b"}), "doc.zz: unknown field (allowed: a, b)"),
        (lambda: READ.table({"zz": 2}, "", {"a"}), "zz: unknown field (allowed: a)"),
        (lambda: READ.table([1], "doc", {"a"}), "doc: expected a table"),
        (lambda: READ.integer(True, "doc.n"), "doc.n: expected an integer, got bool"),
        (lambda: READ.integer(7, "doc.n", 1, 5), "doc.n: 7 is outside [1, 5]"),
        (lambda: READ.number(0, "doc.alpha", 0.0, 10.0), "doc.alpha: 0 is outside (0.0, 10.0]"),
        (lambda: READ.flag(1, "doc.on"), "doc.on: expected true or false"),
        (lambda: READ.choice("x", "doc.mode", ("a", "b")), "doc.mode: 'x' is not one of a, b"),
        (lambda: READ.required({}, "name", "doc", READ.integer), "doc.name: missing"),
        (lambda: READ.unique(["p", "q", "p"], "pools", "name"), "pools[2].name: duplicate 'p'"),
        (lambda: READ.tables({}, "doc.items"), "doc.items: expected a list of tables"),
    ],
)
def test_each_reader_names_the_field_in_the_loaders_own_error(call: Any, message: str) -> None:
    with pytest.raises(DocError) as caught:
        call()
    assert str(caught.value) == message


def test_readers_return_what_they_accept() -> None:
    assert READ.table({"a": 1}, "doc", {"a"}) == {"a": 1}
    assert READ.integer(5, "n", 1, 5) == 5
    assert READ.number(3, "x", 0.0, 10.0) == 3.0
    assert READ.required({"n": 2}, "n", "doc", lambda v, w: READ.integer(v, w, 1)) == 2
    READ.unique(["p", "q"], "pools", "name")
