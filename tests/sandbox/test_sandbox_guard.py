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
        ("from math import *", "'from ... import *' is not allowed in the sandbox"),
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
