"""Session mode: one long-lived hardened child across evaluations."""

from __future__ import annotations

import asyncio

import pytest

from legion.sandbox import Session, aevaluate


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


def test_session_keeps_every_object_between_evaluations() -> None:
    with Session() as session:
        assert session.evaluate("g = (i * i for i in range(5))\nnext(g)").value == 0
        assert session.evaluate("f = lambda x: x + 1\nnext(g)").value == 1
        ev = session.evaluate("f(next(g))")
        assert ev.ok and ev.value == 5
        assert "seccomp" in ev.layers


def test_session_reuses_one_child() -> None:
    with Session() as session:
        session.evaluate("1")
        pid = session.pid
        session.evaluate("2")
        assert session.pid == pid and session.restarts == 1


def test_session_restarts_from_its_snapshot_after_a_timeout() -> None:
    with Session(timeout=0.5) as session:
        assert session.evaluate("x = 41", snapshot=True).ok
        assert session.evaluate("y = 1").ok
        ev = session.evaluate("while True:\n    pass")
        assert ev.error_kind == "timeout"
        after = session.evaluate("x + 1")
        assert after.value == 42 and session.restarts == 2
        assert session.evaluate("y").error_kind == "exception"


def test_session_tools_and_failed_evaluation_keeps_partial_state() -> None:
    with Session(tools=[Counter]) as session:
        assert session.evaluate("a = Counter.bump()").ok
        ev = session.evaluate("a = 10\nraise ValueError('x')")
        assert ev.error_kind == "exception"
        assert session.evaluate("a").value == 10  # documented: partial mutations stay


@pytest.mark.anyio
async def test_session_async_under_trio() -> None:
    async with Session() as session:
        await session.aevaluate("x = 2")
        assert (await session.aevaluate("x * 21")).value == 42


def test_session_async_under_asyncio() -> None:
    async def main() -> object:
        async with Session() as session:
            await session.aevaluate("x = 2")
            return (await session.aevaluate("x * 21")).value

    assert asyncio.run(main()) == 42


@pytest.mark.anyio
async def test_fork_mode_still_works_beside_a_session() -> None:
    async with Session() as session:
        await session.aevaluate("x = 1")
        assert (await aevaluate("3")).value == 3
        assert (await session.aevaluate("x")).value == 1


def test_a_session_restarts_from_its_snapshot_with_classes_and_closures() -> None:
    with Session(timeout=2) as s:
        code = (
            "import enum\nclass Mode(enum.Enum):\n    ON = 1\n"
            "def make(k):\n    return lambda x: x * k\ntriple = make(3)\nmode = Mode.ON"
        )
        assert s.evaluate(code, snapshot=True).ok
        assert s.evaluate("while True:\n    pass").error_kind == "timeout"
        ev = s.evaluate("(mode.name, triple(14))")
        assert ev.ok and ev.value == ["ON", 42], ev.error
        assert s.restarts == 2


def test_a_session_refuses_bindings_and_limits_it_cannot_use_at_once() -> None:
    with pytest.raises(TypeError, match="bindings must be None or the"):
        Session(bindings=b"x = 1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_cpu must be"):
        Session(max_cpu=float("nan"))
