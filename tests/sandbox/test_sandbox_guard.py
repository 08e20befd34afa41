"""The guard (UX layer): plain-words refusals at the line the LLM wrote."""

from __future__ import annotations

import ast

import pytest

from legion.sandbox import evaluate
from legion.sandbox.guard import ALLOWED_MODULES, GuardError, check


def _refusal(code: str) -> str:
    with pytest.raises(GuardError) as info:
        check(ast.parse(code))
    return str(info.value)


def test_import_outside_allowlist_lists_the_available_modules() -> None:
    ev = evaluate("x = 1\nimport os")
    assert ev.error_kind == "forbidden"
    assert ev.error == (
        "line 2: module 'os' is not available in the sandbox; available modules: "
        + ", ".join(ALLOWED_MODULES)
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("from subprocess import run", "module 'subprocess' is not available"),
        ("import os.path", "module 'os.path' is not available"),
        ("from . import x", "relative imports are not available in the sandbox"),
        ("open('f')", "open is not permitted in the sandbox"),
        ("eval('1')", "eval is not permitted in the sandbox"),
        ("getattr(1, 'real')", "getattr is not permitted in the sandbox"),
        ("__import__('os')", "dunder names are not allowed in the sandbox: __import__"),
        ("x.__subclasses__()", "dunder attributes are not allowed in the sandbox: .__subclasses__"),
        ("f.__globals__", "dunder attributes are not allowed in the sandbox: .__globals__"),
        ("import random\nrandom._os", "private attributes of modules and tools are not"),
        ("import json as j\nj.decoder._x", "private attributes of modules and tools are not"),
        ("from random import _os", "private names of other modules are not available"),
        ("g.gi_frame", "frame, code and traceback introspection is not allowed in the sandbox"),
        ("e.tb_frame.f_back", "frame, code and traceback introspection is not allowed"),
        ("c.cr_frame", "frame, code and traceback introspection is not allowed"),
        ("x.__getattribute__('real')", "dunder attributes are not allowed"),
        ("f.__code__", "dunder attributes are not allowed in the sandbox: .__code__ (only"),
        ("f.__closure__", "dunder attributes are not allowed in the sandbox: .__closure__"),
        ("import json\njson.__dict__", "private attributes of modules and tools are not"),
        ("from json import loads\nloads.__dict__", "private attributes of modules and tools"),
        ("from random import *\nRandom._randbelow", "private attributes of modules and tools"),
        ("A.__mro__[-1].__subclasses__()", "dunder attributes are not allowed"),
        ("from codecs import *\nopen('f')", "open is not permitted in the sandbox"),
    ],
)
def test_guard_refusals_are_plain_words(code: str, message: str) -> None:
    assert message in _refusal(code)


def test_allowed_code_passes_the_guard() -> None:
    check(
        ast.parse("import math, json\nfrom collections import Counter\n_ = [i for i in range(3)]")
    )


def test_runtime_import_of_unavailable_module_is_refused() -> None:
    ev = evaluate("import json\njson.loads('[1]')")
    assert ev.value == [1]


@pytest.mark.parametrize(
    "handler", ["ModuleNotFoundError", "ImportError", "(ValueError, ImportError)", "Exception", ""]
)
def test_an_import_fallback_in_a_try_runs_as_in_cpython(handler: str) -> None:
    code = f"try:\n    import orjson as json\nexcept {handler}:\n    import json\njson.dumps([1])"
    ev = evaluate(code)
    assert ev.ok and ev.value == "[1]", ev.error


def test_a_caught_unavailable_import_raises_the_plain_module_not_found_error() -> None:
    ev = evaluate("try:\n    from subprocess import run\nexcept ImportError as e:\n    r = e\nr")
    assert ev.ok and ev.value_repr.startswith(
        "ModuleNotFoundError(\"module 'subprocess' is not available in the sandbox"
    )


@pytest.mark.parametrize(
    "code",
    [
        "try:\n    import os\nexcept ValueError:\n    pass",  # the handler does not catch it
        "try:\n    pass\nexcept ImportError:\n    import os",  # not in the try's body
        "try:\n    def f():\n        import os\nexcept ImportError:\n    pass",  # runs later
        "try:\n    import locale\nexcept ImportError:\n    pass",  # a hidden helper module
    ],
)
def test_other_unavailable_imports_are_still_refused_statically(code: str) -> None:
    assert "module '" in _refusal(code) and "is not available in the sandbox" in _refusal(code)


IDIOMS = {
    "frozen dataclass __post_init__": (
        "from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n    x: int\n"
        "    y: int = 0\n    def __post_init__(self):\n"
        "        object.__setattr__(self, 'y', self.x * 2)\nP(2).y",
        4,
    ),
    "own __setattr__": (
        "class T:\n    def __setattr__(self, k, v):\n        super().__setattr__(k, v * 2)\n"
        "t = T()\nt.a = 1\nt.a",
        2,
    ),
    "own __delattr__ and __getattr__": (
        "class D:\n    def __getattr__(self, k):\n        return k\n"
        "d = D()\nd.a = 1\nd.__delattr__('a')\n(d.a, d.__getattr__('b'))",
        ["a", "b"],
    ),
    "__dict__ of own objects": (
        "class A:\n    def __init__(self):\n        self.a = 1\nA().__dict__",
        {"a": 1},
    ),
    "exception chaining": (
        "try:\n    raise ValueError('a') from KeyError('b')\nexcept ValueError as e:\n"
        "    r = (repr(e.__cause__), e.__context__ is None, e.__suppress_context__, "
        "e.__traceback__.tb_lineno)\nr",
        ["KeyError('b')", True, True, 2],
    ),
    "__mro__, __bases__, __base__": (
        "class A: pass\nclass B(A): pass\n"
        "([k.__name__ for k in B.__mro__], B.__bases__[0].__name__, B.__base__ is A)",
        [["B", "A", "object"], "A", True],
    ),
    "from m import *": (
        "from math import *\nfrom collections import *\n(floor(sqrt(17)), Counter('aab')['a'])",
        [4, 2],
    ),
}


@pytest.mark.parametrize("code", IDIOMS.values(), ids=IDIOMS.keys())
def test_ordinary_dunder_idioms_and_star_imports_run(code: tuple[str, object]) -> None:
    ev = evaluate(code[0])
    assert ev.ok, ev.error
    assert ev.value == code[1]
