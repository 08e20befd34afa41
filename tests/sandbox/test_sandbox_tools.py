"""The tool proxy: stubs by short name, calls cross to the parent, values are plain."""

from __future__ import annotations

import asyncio
import math as host_math
import sys

import pytest
import trio

from legion.sandbox import ToolConfigError, aevaluate, evaluate
from legion.sandbox.proxy import resolve_tools

SECRET = "tool-secret-8f1d2c"


class Weather:
    """A Legion-style tool: a class whose public methods are the functions."""

    api_key = SECRET

    def forecast(self, city: str, days: int = 1) -> dict[str, object]:
        return {"city": city, "days": days, "sky": "clear"}

    def fail(self) -> None:
        raise ValueError("the weather service is down")

    def weird(self) -> object:
        return object()

    @staticmethod
    def celsius(f: float) -> float:
        return round((f - 32) * 5 / 9, 1)


class Slow:
    async def wait(self, seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    async def echo(self, x: int) -> int:
        await trio.sleep(0)
        return x


class AsyncioTool:
    async def echo(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


def test_tool_call_crosses_to_the_parent() -> None:
    ev = evaluate("Weather.forecast('Paris', days=3)", tools={"Weather": Weather})
    assert ev.ok, ev.error
    assert ev.value == {"city": "Paris", "days": 3, "sky": "clear"}


def test_list_of_classes_uses_the_class_name() -> None:
    ev = evaluate("Weather.celsius(212)", tools=[Weather])
    assert ev.value == 100.0


def test_module_and_instance_tools() -> None:
    ev = evaluate(
        "(M.sqrt(16), W.forecast('Oslo')['city'])", tools={"M": host_math, "W": Weather()}
    )
    assert ev.value == [4.0, "Oslo"]


def test_tool_exception_is_raised_in_the_child_with_its_message() -> None:
    code = "try:\n    Weather.fail()\nexcept ToolError as e:\n    msg = str(e)\nmsg"
    ev = evaluate(code, tools=[Weather])
    assert ev.value == "ValueError: the weather service is down"
    ev = evaluate("Weather.fail()", tools=[Weather])
    assert ev.error_kind == "exception"
    assert ev.error == "line 1: ToolError: ValueError: the weather service is down"


def test_non_plain_return_value_is_a_clear_error() -> None:
    ev = evaluate("Weather.weird()", tools=[Weather])
    assert ev.error_kind == "exception"
    assert "Weather.weird returned a value of type object" in ev.error


def test_non_plain_argument_is_a_clear_error() -> None:
    ev = evaluate("Weather.forecast(object())", tools=[Weather])
    assert ev.error_kind == "exception"
    assert "arguments of Weather.forecast must be plain values" in ev.error


def test_unknown_function_is_an_attribute_error() -> None:
    ev = evaluate("Weather.delete_everything()", tools=[Weather])
    assert ev.error == (
        "line 1: AttributeError: tool Weather has no function 'delete_everything' (only "
        "methods defined on the tool's class can be called); available: celsius, fail, "
        "forecast, weird"
    )


def test_tool_stub_holds_no_secret() -> None:
    ev = evaluate("repr(Weather) + str(dir(Weather))", tools=[Weather])
    assert ev.ok and SECRET not in ev.value
    ev = evaluate("'{0.forecast}'.format(Weather)", tools=[Weather])
    assert SECRET not in str(ev.value)


@pytest.mark.anyio
async def test_async_tool_under_trio() -> None:
    ev = await aevaluate("Slow.echo(41) + 1", tools=[Slow])
    assert ev.value == 42


def test_async_tool_under_asyncio_runs_on_the_callers_loop() -> None:
    ev = asyncio.run(aevaluate("AsyncioTool.echo(1)", tools=[AsyncioTool]))
    assert ev.ok, ev.error
    assert ev.value == 2


@pytest.mark.anyio
async def test_tool_time_counts_against_the_timeout() -> None:
    ev = await aevaluate("Slow.wait(30)", tools=[Slow], timeout=0.5)
    assert ev.error_kind == "timeout" and ev.error == "timeout after 0.5 s"


def test_many_tool_calls_in_one_evaluation() -> None:
    ev = evaluate("sum(Weather.celsius(32 + i) for i in range(500))", tools=[Weather])
    assert ev.ok


def test_bad_tool_names_are_refused() -> None:
    with pytest.raises(ToolConfigError, match="must be a Python identifier"):
        resolve_tools({"_hidden": Weather})
    with pytest.raises(ToolConfigError, match="no public functions"):
        resolve_tools({"Empty": object()})


class Base:
    def inherited(self) -> str:
        return "from the base"


class Stateful(Base):
    """Holds callables as state; only its methods are tool functions."""

    def __init__(self) -> None:
        self.wipe = lambda: "wiped"  # an attribute that happens to be callable
        self.method = lambda: "shadowed"  # shadows the method of the same name

    def method(self) -> str:
        return "the method"

    @classmethod
    def kind(cls) -> str:
        return cls.__name__

    @staticmethod
    def twice(x: int) -> int:
        return 2 * x


def test_an_instance_exposes_its_class_methods_never_callable_attributes() -> None:
    table = resolve_tools({"S": Stateful()})
    assert sorted(table["S"]) == ["inherited", "kind", "method", "twice"]
    ev = evaluate("(S.method(), S.inherited(), S.kind(), S.twice(21))", tools={"S": Stateful()})
    assert ev.value == ["the method", "from the base", "Stateful", 42], ev.error
    ev = evaluate("S.wipe()", tools={"S": Stateful()})
    assert ev.error_kind == "exception"
    assert "tool S has no function 'wipe' (only methods defined on the tool's class" in ev.error


def test_legion_tool_internals_are_not_exposed() -> None:
    import legion

    class Mine(legion.Tool):
        def go(self) -> int:
            return 1

    assert sorted(resolve_tools({"M": Mine()})["M"]) == ["go"]
    assert sorted(resolve_tools([Mine])["Mine"]) == ["go"]


class Awkward:
    def echo(self, value: object) -> str:
        return type(value).__name__

    def deep(self) -> object:
        value: list[object] = []
        for _ in range(100_000):
            value = [value]
        return value

    def big(self) -> int:
        return 10**5000

    def huge(self) -> str:
        return "x" * (12 * 1024 * 1024)


DEEP = "v = []\nfor _ in range(100000):\n    v = [v]\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (DEEP + "Awkward.echo(v)", "line 4: ValueError: arguments of Awkward.echo are nested too"),
        ("Awkward.echo(10 ** 5000)", "line 1: ValueError: arguments of Awkward.echo hold an int"),
        ("Awkward.echo('x' * (12 << 20))", "arguments of Awkward.echo are too large (12 MiB"),
        ("Awkward.deep()", "ToolError: Awkward.deep returned a value nested too deeply"),
        ("Awkward.big()", "ToolError: Awkward.big returned an int outside the 64-bit range"),
        ("Awkward.huge()", "ToolError: Awkward.huge returned a value too large for the sandbox"),
        (DEEP + "v", "the value of the last expression is nested too deeply to return"),
        ("10 ** 5000", "the value of the last expression cannot be shown: ValueError"),
    ],
)
def test_deep_or_huge_values_are_a_clear_error_and_the_code_can_go_on(
    code: str, message: str
) -> None:
    ev = evaluate(code, tools=[Awkward], timeout=20)
    assert ev.error_kind == "exception" and message in ev.error, ev.error
    assert evaluate("Awkward.echo([[1]])", tools=[Awkward]).value == "list"


def test_a_value_just_within_the_depth_limit_crosses() -> None:
    code = "v = 1\nfor _ in range(150):\n    v = [v]\nAwkward.echo(v)"
    assert evaluate(code, tools=[Awkward]).value == "list"


def test_where_the_recursion_limit_does_not_bound_c_code_the_value_is_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.12+ counts C recursion apart: the same values are refused by walking them (the
    3.11 strategy, which lowers the recursion limit, runs in the child in the tests above)."""
    from legion.sandbox import protocol

    monkeypatch.setattr(protocol, "LIMIT_BOUNDS_NESTING", False)

    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value] if levels % 2 else {"k": value}
        return value

    assert protocol.encode_bounded(protocol.Call(1, "T", "f", [nested(150)], {}))
    for levels in (250, 251, 100_000):
        with pytest.raises(RecursionError):
            protocol.encode_bounded(protocol.Call(1, "T", "f", [nested(levels)], {}))


class Unruly:
    """Tools that fail the ways libraries do: sys.exit, Ctrl-C, broken messages, bad names."""

    def parse(self, text: str) -> str:
        sys.exit(2)  # what argparse does on bad input

    def interrupt(self) -> None:
        raise KeyboardInterrupt

    def other(self) -> None:
        raise GeneratorExit("stop")

    def surrogate(self) -> None:
        name = b"caf\xe9".decode("utf-8", "surrogateescape")
        raise FileNotFoundError(f"no such file: {name}")

    def unprintable(self) -> None:
        class BrokenError(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        raise BrokenError

    def name(self) -> str:
        return b"caf\xe9.txt".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("parse('--n x')", "ToolError: SystemExit: 2"),
        ("interrupt()", "ToolError: KeyboardInterrupt"),
        ("other()", "ToolError: GeneratorExit: stop"),
        ("surrogate()", "ToolError: FileNotFoundError: no such file: caf\\udce9"),
        ("unprintable()", "ToolError: BrokenError: <its message could not be shown"),
    ],
)
def test_any_tool_exception_is_a_tool_error_the_code_can_catch(call: str, expected: str) -> None:
    ev = evaluate(f"Unruly.{call}", tools=[Unruly])
    assert ev.error_kind == "exception" and expected in ev.error, ev.error
    caught = evaluate(
        f"try:\n    Unruly.{call}\nexcept ToolError:\n    r = 'on'\nr", tools=[Unruly]
    )
    assert caught.ok and caught.value == "on"


def test_a_tool_str_with_a_lone_surrogate_is_named_as_such() -> None:
    ev = evaluate("Unruly.name()", tools=[Unruly])
    assert "a str holding a lone surrogate ('\\udce9' at position 3" in ev.error, ev.error
    assert "value of type str" not in ev.error


def test_a_tool_cancelled_by_the_timeout_is_still_a_timeout() -> None:
    ev = evaluate("Slow.wait(30)", tools=[Slow], timeout=0.5)
    assert ev.error_kind == "timeout"
