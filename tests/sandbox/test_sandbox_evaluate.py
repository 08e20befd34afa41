"""Evaluation semantics: value of the last expression, print capture, errors, outcome kinds."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from legion.sandbox import SandboxUnavailable, aevaluate, evaluate, info


def test_value_of_last_expression_is_the_result() -> None:
    ev = evaluate("x = 6 * 7\nx")
    assert ev.ok and ev.value == 42 and ev.error_kind is None
    assert ev.variables == {"x": "42"}


def test_statement_only_code_has_no_value() -> None:
    ev = evaluate("x = 1")
    assert ev.ok and ev.value is None


def test_print_output_is_captured() -> None:
    ev = evaluate("print('hello', 1, sep='-')\nprint('x', end='')")
    assert ev.ok and ev.stdout == "hello-1\nx"


def test_exception_has_short_traceback_with_the_lines_as_written() -> None:
    code = "a = 1\n\ndef f(x):\n    return x / 0\n\nf(a)"
    ev = evaluate(code)
    assert not ev.ok and ev.error_kind == "exception"
    assert ev.error == "line 4: ZeroDivisionError: division by zero"
    assert "line 6, in <module>" in ev.traceback
    assert "line 4, in f\n    return x / 0" in ev.traceback
    assert "child.py" not in ev.traceback and "runner" not in ev.traceback


def test_syntax_error_names_the_line() -> None:
    ev = evaluate("x = 1\ny = (")
    assert ev.error_kind == "exception"
    assert ev.error.startswith("line 2: SyntaxError:")


def test_non_native_value_comes_back_as_its_repr() -> None:
    ev = evaluate("import fractions\nfractions.Fraction(1, 3)")
    assert ev.ok and ev.value == "Fraction(1, 3)" and ev.value_repr == "Fraction(1, 3)"


def test_native_containers_come_back_as_values() -> None:
    ev = evaluate("{'a': [1, 2.5, None, True], 'b': 'ü'}")
    assert ev.value == {"a": [1, 2.5, None, True], "b": "ü"}


def test_timeout_kills_the_child() -> None:
    ev = evaluate("while True:\n    pass", timeout=0.5, max_cpu=5)
    assert ev.error_kind == "timeout" and ev.error == "timeout after 0.5 s"
    assert ev.duration < 0.5 + 0.5


def test_cpu_limit_is_reported() -> None:
    ev = evaluate("while True:\n    pass", timeout=10, max_cpu=1)
    assert ev.error_kind == "cpu" and ev.error == "CPU limit exceeded (1 s)"


def test_memory_bomb_is_a_memory_error() -> None:
    ev = evaluate("bytearray(10**10)")
    assert ev.error_kind == "memory" and ev.error == "memory limit exceeded (512 MiB)"


def test_max_memory_is_applied() -> None:
    ev = evaluate("x = bytearray(100 * 2**20)\nlen(x)", max_memory=64 * 2**20)
    assert ev.error_kind == "memory" and ev.error == "memory limit exceeded (64 MiB)"
    assert evaluate("len(bytearray(100 * 2**20))").value == 100 * 2**20


def test_endless_print_hits_the_output_limit() -> None:
    ev = evaluate("while True:\n    print('spam')", max_output=10_000)
    assert ev.error_kind == "output_limit"
    assert ev.error == "output limit exceeded (10000 characters)"


def test_output_limit_cannot_be_swallowed_by_except() -> None:
    code = (
        "for i in range(10**6):\n    try:\n        print('x' * 100)\n"
        "    except Exception:\n        pass"
    )
    ev = evaluate(code, max_output=1000)
    assert ev.error_kind == "output_limit"


def test_huge_result_is_an_output_limit() -> None:
    ev = evaluate("'x' * (20 * 2**20)")
    assert ev.error_kind == "output_limit" and ev.error.startswith("result too large")


def test_layers_are_reported() -> None:
    ev = evaluate("1")
    sandbox = info()
    assert "seccomp" in ev.layers and "rlimits" in ev.layers and "guard" in ev.layers
    if sandbox.landlock_abi:
        assert f"landlock-abi{sandbox.landlock_abi}" in ev.layers


def test_seccomp_failure_fails_closed() -> None:
    with pytest.raises(SandboxUnavailable, match="seccomp could not be loaded"):
        evaluate("1 + 1", _break_seccomp=True)


def test_unsafe_mode_runs_without_seccomp_and_says_so() -> None:
    ev = evaluate("1 + 1", _break_seccomp=True, unsafe=True)
    assert ev.ok and ev.value == 2
    assert "seccomp" not in ev.layers and "rlimits" in ev.layers


@pytest.mark.anyio
async def test_aevaluate_under_trio() -> None:
    ev = await aevaluate("sum(range(10))")
    assert ev.value == 45


def test_aevaluate_under_asyncio() -> None:
    ev = asyncio.run(aevaluate("sum(range(10))"))
    assert ev.value == 45


@pytest.mark.anyio
async def test_concurrent_evaluations_under_trio() -> None:
    import trio

    results: list[int] = []

    async def one(i: int) -> None:
        results.append((await aevaluate(f"{i} * 2")).value)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, i)
    assert sorted(results) == [i * 2 for i in range(8)]


SURROGATE = "name = b'caf\\xe9'.decode('utf-8', 'surrogateescape')\n"


def test_text_with_a_lone_surrogate_is_shown_escaped_like_cpython() -> None:
    ev = evaluate(SURROGATE + "raise ValueError(f'bad name {name}')")
    assert ev.error_kind == "exception" and ev.error == "line 2: ValueError: bad name caf\\udce9"
    printed = evaluate(SURROGATE + "print(name)\nname")
    assert printed.ok and printed.stdout == "caf\\udce9\n" and printed.value_repr == "'caf\\udce9'"


def test_code_too_deeply_nested_to_compile_is_an_ordinary_exception() -> None:
    ev = evaluate("1" + "+1" * 200_000, timeout=10)
    assert ev.error_kind == "exception" and "RecursionError" in ev.error
    assert "nested too deeply to compile" in ev.error


def test_a_nul_byte_in_the_code_is_one_syntax_error_shown_once() -> None:
    ev = evaluate("1\x00")
    assert ev.error_kind == "exception" and "SyntaxError" in ev.error
    assert "SyntaxError" not in ev.traceback


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_cpu": math.nan}, "max_cpu"),
        ({"max_cpu": 0}, "max_cpu"),
        ({"max_memory": -1}, "max_memory"),
        ({"max_memory": 1.5}, "max_memory"),
        ({"max_output": math.inf}, "max_output"),
        ({"max_output": 0}, "max_output"),
    ],
)
def test_limits_out_of_range_are_a_clear_value_error(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"legion.sandbox: {named} must be"):
        evaluate("1", **kwargs)


def test_a_huge_max_cpu_is_capped_not_an_overflow() -> None:
    assert evaluate("1", max_cpu=1e300).value == 1


def test_bindings_that_are_not_bindings_are_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"bindings must be None or the \.bindings of an earlier"):
        evaluate("x", bindings={"x": 1})  # type: ignore[arg-type]
