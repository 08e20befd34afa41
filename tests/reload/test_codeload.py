"""`codeload.load`, the in-process half of a reload: real module files rewritten on disk, loaded
again in this process, and every way of holding their classes and functions checked."""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legion.supervisor import codeload

SHAPES_V1 = '''
import enum
import functools

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return "logged " + fn(*args)
    return wrapper

class Base:
    def name(self):
        return "base-1"

class Shape(Base):
    """Version one."""

    class Part:
        def kind(self):
            return "part-1"

    def __init__(self):
        self.state = "kept"

    def name(self):
        return "shape-1 " + super().name()

    def area(self, size: int) -> int:
        return size

class Color(enum.Enum):
    RED = 1

@logged
def describe():
    return "describe-1"

def plain():
    return "plain-1"

SHAPES = [Shape]
'''

SHAPES_V2 = '''
import enum
import functools

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return "logged " + fn(*args)
    return wrapper

class Base:
    def name(self):
        return "base-2"

class Shape(Base):
    """Version two."""

    class Part:
        def kind(self):
            return "part-2"

    def __init__(self):
        self.state = "fresh"

    def name(self):
        return "shape-2 " + super().name()

    def area(self, size: int, scale: float = 1.0) -> float:
        return size * scale * 2

    def perimeter(self):
        return "new method " + super().name()

class Color(enum.Enum):
    RED = 1
    BLUE = 2

@logged
def describe():
    return "describe-2"

def plain():
    return "plain-2"

SHAPES = [Shape]
'''

USER = """
from {shapes} import Shape, Color, describe, plain
import {shapes}

class Holder:
    kinds = [Shape]
"""


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    tag = "_" + tmp_path.name[-8:].replace("-", "_")
    shapes, user = f"shapes{tag}", f"user{tag}"
    (tmp_path / f"{shapes}.py").write_text(textwrap.dedent(SHAPES_V1))
    (tmp_path / f"{user}.py").write_text(textwrap.dedent(USER.format(shapes=shapes)))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(shapes), importlib.import_module(user)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(shapes, None)
        sys.modules.pop(user, None)


def test_classes_and_functions_are_patched_in_place_for_every_holder(
    modules: tuple[Any, Any],
) -> None:
    shapes, user = modules
    shape, part, area = shapes.Shape(), shapes.Shape.Part(), shapes.Shape().area
    old_shape, old_describe, old_plain = shapes.Shape, shapes.describe, shapes.plain
    Path(shapes.__file__).write_text(textwrap.dedent(SHAPES_V2))

    loaded = codeload.load([shapes.__name__])

    assert loaded.modules == [shapes.__name__]
    # the same objects everywhere, now running the new code
    assert shapes.Shape is old_shape is user.Shape is user.Holder.kinds[0] is shapes.SHAPES[0]
    assert shapes.describe is old_describe and shapes.plain is old_plain is user.plain
    assert shape.name() == "shape-2 base-2"  # super() still finds the (patched) base
    assert shape.perimeter() == "new method base-2"  # a new method's super() too
    assert shape.state == "kept" and shapes.Shape().state == "fresh"
    assert area(3) == 6.0  # a bound method taken before the load
    assert part.kind() == "part-2" and shapes.Shape.__doc__ == "Version two."
    assert user.describe() == "logged describe-2" and user.plain() == "plain-2"
    assert isinstance(shape, user.Shape)
    # the signature as written: the loader's own `from __future__` does not leak into it
    assert str(inspect.signature(shapes.Shape.area)) == (
        "(self, size: int, scale: float = 1.0) -> float"
    )
    # an Enum cannot change in place: it is replaced, and the importers' names follow
    assert user.Color is shapes.Color and [c.name for c in user.Color] == ["RED", "BLUE"]

    loaded.undo()
    assert shape.name() == "shape-1 base-1" and not hasattr(shape, "perimeter")
    assert area(3) == 3 and user.describe() == "logged describe-1" and user.plain() == "plain-1"
    assert shapes.Shape.__doc__ == "Version one." and [c.name for c in user.Color] == ["RED"]


def test_a_module_that_fails_changes_nothing(modules: tuple[Any, Any]) -> None:
    shapes, user = modules
    shape = shapes.Shape()
    Path(shapes.__file__).write_text(textwrap.dedent(SHAPES_V2) + "\nraise RuntimeError('boom')\n")
    with pytest.raises(codeload.LoadError, match=r"RuntimeError: boom"):
        codeload.load([shapes.__name__])
    assert shape.name() == "shape-1 base-1" and user.plain() == "plain-1"
    assert [c.name for c in shapes.Color] == ["RED"] and shapes.Shape.__doc__ == "Version one."

    Path(shapes.__file__).write_text("def broken(:\n")
    with pytest.raises(codeload.LoadError, match=r"SyntaxError.*line 1"):
        codeload.load([shapes.__name__])
    assert user.plain() == "plain-1"


def test_dependents_follow_imports_through_other_modules(modules: tuple[Any, Any]) -> None:
    shapes, user = modules
    found = codeload.dependents([shapes.__name__])
    assert {shapes.__name__, user.__name__} <= found
    assert "json" not in found and "legion.agent" not in found
    assert codeload.load(["no_such_module_loaded"]).modules == []
