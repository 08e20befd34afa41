"""Running the trio driver for an asyncio caller: in a worker thread, with async tools sent
back to the caller's event loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .outcome import Evaluation

Caller = Callable[[Callable[..., Any], list[Any], dict[str, Any]], Awaitable[Any]]


def asyncio_caller(loop: asyncio.AbstractEventLoop) -> Caller:
    async def call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        result = fn(*args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        awaitable = result

        async def wrapped() -> Any:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wrapped(), loop)
        try:
            return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        finally:
            if not future.done():
                future.cancel()

    return call


async def in_thread(run: Callable[[Caller], Awaitable[Evaluation]]) -> Evaluation:
    loop = asyncio.get_running_loop()
    caller = asyncio_caller(loop)

    def blocking() -> Evaluation:
        return trio.run(functools.partial(run, caller))

    return await asyncio.to_thread(blocking)
