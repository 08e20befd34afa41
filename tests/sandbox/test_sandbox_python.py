"""Ordinary Python runs in the sandbox as under CPython (issue 17 §5), unless a documented rule
refuses it with a message that says so."""

from __future__ import annotations

import pytest

from legion.sandbox import evaluate
from legion.sandbox.guard import OPTIONAL_MODULES

ORDINARY = [
    pytest.param("class P:\n    x: int\nP.__annotations__ == {'x': int}", id="annotations"),
    pytest.param(
        "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\n"
        "dataclasses.fields(P)[0].type is int",
        id="dataclass-field-type",
    ),
    pytest.param("def f(a: int) -> str:\n    return ''\nf.__annotations__['a'] is int", id="def"),
    pytest.param(
        "from __future__ import annotations\nclass P:\n    x: int\n"
        "P.__annotations__ == {'x': 'int'}",
        id="own-future-import",
    ),
    pytest.param("_x = 20\n_x * 2 + 2 == 42", id="underscore-name"),
    pytest.param(
        "class Base:\n    def __init_subclass__(cls, **kw):\n"
        "        super().__init_subclass__(**kw)\n"
        "class One(Base):\n    def __new__(cls):\n        return super().__new__(cls)\n"
        "One().__class__.__name__ == 'One'",
        id="class-machinery",
    ),
    pytest.param(
        "class Node:\n    def __init__(self, left):\n        self._left = left\n"
        "    def _depth(self):\n"
        "        return 1 if self._left is None else 1 + self._left._depth()\n"
        "Node(Node(None))._depth() == 2",
        id="underscore-attributes",
    ),
    pytest.param("def _helper():\n    return 7\n_helper() == 7", id="underscore-function"),
    pytest.param(
        "class S:\n    __slots__ = ('a',)\nif __name__ != '':\n    r = True\nr", id="slots"
    ),
    pytest.param(
        "import enum\nclass C(enum.Enum):\n    A = 1\nlist(C.__members__) == ['A']", id="members"
    ),
    pytest.param(
        "import time\nt = time.time()\nm = time.monotonic()\ntime.sleep(0.01)\n"
        "time.time() > t and time.monotonic() - m >= 0.01 and time.perf_counter() > 0",
        id="time",
    ),
    pytest.param("import time\ntime.strftime('%Y-%m-%d', time.gmtime(0)) == '1970-01-01'", id="gm"),
    pytest.param("import stat\nstat.S_ISDIR(0o040755) and not stat.S_ISREG(0o040755)", id="stat"),
    pytest.param(
        "import queue\nq = queue.PriorityQueue()\nq.put((2, 'b'))\nq.put((1, 'a'))\n"
        "q.get()[1] == 'a' and q.qsize() == 1",
        id="queue",
    ),
    pytest.param(
        "import queue\ntry:\n    queue.Queue().get(timeout=0.01)\nexcept queue.Empty:\n"
        "    r = True\nr",
        id="queue-timeout",
    ),
]


@pytest.mark.parametrize("code", ORDINARY)
def test_ordinary_python_runs_as_under_cpython(code: str) -> None:
    ev = evaluate(code)
    assert ev.ok, ev.error
    assert ev.value is True


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("x = 1\nx.__class__.__base__.__subclasses__()", "line 2: dunder attributes are not"),
        ("import random\nrandom._inst", "line 2: private attributes of modules and tools"),
        ("import random\nr = random\nr._os", "line 3: private attributes of modules and tools"),
        ("__builtins__", "line 1: dunder names are not allowed in the sandbox: __builtins__"),
    ],
)
def test_dunders_and_other_modules_privates_are_still_refused(code: str, message: str) -> None:
    ev = evaluate(code)
    assert ev.error_kind == "forbidden" and message in ev.error


def test_a_module_bound_in_an_earlier_step_keeps_its_privates_refused() -> None:
    first = evaluate("import random as rnd")
    ev = evaluate("rnd._inst", bindings=first.bindings)
    assert ev.error_kind == "forbidden" and "private attributes of modules" in ev.error


def test_annotations_stay_objects_across_steps() -> None:
    first = evaluate("import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\np = P(1)")
    ev = evaluate("dataclasses.fields(P)[0].type is int and p.x == 1", bindings=first.bindings)
    assert ev.ok and ev.value is True, ev.error


def test_own_future_import_applies_when_a_definition_is_re_run() -> None:
    code = "from __future__ import annotations\nclass P:\n    x: Later\nclass Later:\n    pass"
    first = evaluate(code)
    assert first.ok, first.error
    ev = evaluate("P.__annotations__", bindings=first.bindings)
    assert ev.ok and ev.value == {"x": "Later"}, ev.error


def test_sleep_past_the_time_limit_ends_the_evaluation() -> None:
    ev = evaluate("import time\ntime.sleep(30)", timeout=0.5)
    assert ev.error_kind == "timeout" and ev.error == "timeout after 0.5 s"
    assert ev.duration < 5


@pytest.mark.parametrize("module", OPTIONAL_MODULES)
def test_an_optional_module_is_preloaded_and_can_be_allowed(module: str) -> None:
    ev = evaluate(f"import {module}\n{module}.__name__", modules=[module])
    assert ev.ok and ev.value == module, ev.error


def test_an_optional_module_works_under_the_full_stack() -> None:
    code = "import hashlib, struct\n(hashlib.sha256(b'a').hexdigest()[:8], struct.pack('>I', 1))"
    ev = evaluate(code, modules=["hashlib", "struct"])
    assert ev.ok and ev.value == ["ca978112", b"\x00\x00\x00\x01"], ev.error
    assert "seccomp" in ev.layers


def test_an_optional_module_is_refused_unless_allowed_and_the_message_lists_it() -> None:
    ev = evaluate("import hashlib")
    assert ev.error_kind == "forbidden" and "module 'hashlib' is not available" in ev.error
    ev = evaluate("import os", modules=["hashlib"])
    assert ev.error_kind == "forbidden" and ev.error.endswith(", hashlib")


@pytest.mark.parametrize("bad", [["os"], ["numpy"], "hashlib", [1]])
def test_a_module_the_zygote_cannot_preload_is_refused_with_its_name(bad: object) -> None:
    with pytest.raises(ValueError, match=r"module") as info:
        evaluate("1", modules=bad)  # type: ignore[arg-type]
    assert repr(bad if isinstance(bad, str) else bad[0]) in str(info.value)  # type: ignore[index]
