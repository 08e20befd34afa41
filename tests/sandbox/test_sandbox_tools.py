"""The tool proxy: stubs by short name, calls cross to the parent, values are plain."""

from __future__ import annotations

import asyncio
import math as host_math

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
        "line 1: AttributeError: tool Weather has no function 'delete_everything'; "
        "available: celsius, fail, forecast, weird"
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
