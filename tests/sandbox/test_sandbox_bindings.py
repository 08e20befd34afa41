"""Bindings: variables, functions and classes persist as an opaque blob the parent never opens."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from legion.sandbox import Bindings, evaluate


def test_variables_persist_across_evaluations() -> None:
    first = evaluate("x = 40\nnames = ['a', 'b']")
    assert first.ok and first.bindings is not None
    second = evaluate("x + len(names)", bindings=first.bindings)
    assert second.value == 42
    assert second.variables == {"x": "40", "names": "['a', 'b']"}


def test_functions_and_classes_survive() -> None:
    code = (
        "import math\n"
        "def area(r):\n    return math.pi * r * r\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"
        "    def double(self):\n        return Point(self.x * 2)\n"
        "p = Point(21)\n"
    )
    first = evaluate(code)
    assert first.ok, first.error
    second = evaluate("(round(area(1), 2), p.double().x, math.sqrt(4))", bindings=first.bindings)
    assert second.ok, second.error
    assert second.value == [3.14, 42, 2.0]


def test_failed_evaluation_keeps_the_previous_bindings() -> None:
    first = evaluate("x = 1")
    failed = evaluate("x = 2\nraise ValueError('no')", bindings=first.bindings)
    assert not failed.ok and failed.bindings is first.bindings
    assert evaluate("x", bindings=failed.bindings).value == 1


def test_unpicklable_values_are_reported_as_dropped_with_the_reason() -> None:
    ev = evaluate("f = lambda: 1\ng = (i for i in range(3))\nkeep = 5")
    assert ev.ok and ev.dropped == ("g",)
    assert "generator" in ev.dropped_reasons["g"]
    assert "g" not in ev.variables and ev.bindings is not None
    assert ev.bindings.names == ("f", "keep")
    assert evaluate("keep + f()", bindings=ev.bindings).value == 6


def test_variables_report_short_reprs() -> None:
    ev = evaluate("big = list(range(1000))\ns = 'x' * 500")
    assert len(ev.variables["big"]) < 80 and len(ev.variables["s"]) < 80


def test_parent_never_unpickles_child_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the parent unpickled child data")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    first = evaluate("x = {'k': [1, 2]}")
    assert evaluate("x['k'][1]", bindings=first.bindings).value == 2


def test_bindings_round_trip_as_bytes() -> None:
    first = evaluate("total = 7")
    assert first.bindings is not None
    stored = Bindings(bytes(first.bindings.blob))
    assert evaluate("total * 6", bindings=stored).value == 42


def test_a_forged_blob_is_decoded_only_in_the_sandbox(tmp_path: Path) -> None:
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {target}",))

    entries = [("x", "value", pickle.dumps(Evil())), ("y", "value", pickle.dumps(2))]
    forged = pickle.dumps({"version": 2, "modules": {}, "entries": entries})
    ev = evaluate("y * 21", bindings=Bindings(forged))
    assert ev.ok and ev.value == 42
    assert "posix.system is not allowed" in ev.dropped_reasons["x"]
    assert not target.exists()


def test_an_unreadable_blob_is_reported_and_the_code_still_runs() -> None:
    ev = evaluate("1 + 1", bindings=Bindings(b"not a pickle"))
    assert ev.ok and ev.value == 2
    assert "could not be read" in ev.dropped_reasons["<all>"]
