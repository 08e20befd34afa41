"""A tour of the runtime: servers as OS processes, calls, casts, links, monitors and names.

    uv run --locked --extra dev python examples/hello_runtime.py

No API key and no network: this runs on the embedded node that the first API call starts.
"""

from __future__ import annotations

import os
from typing import Any

import legion


class Counter(legion.Server):
    """Keeps a count; state lives on `self`, each callback may be plain or async."""

    def init(self, start: int) -> None:
        self.count = start

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request == "get":
            return self.count
        if request == "whoami":
            return os.getpid()
        if request == "crash":
            raise ValueError("asked to crash")
        self.count += request
        return self.count

    def handle_cast(self, message: Any) -> None:
        self.count += message


def main() -> None:
    counter = legion.start_link(Counter, 10, name="counter")
    assert counter is not None
    print(
        f"started {counter!r} in OS process {legion.call(counter, 'whoami')} (app: {os.getpid()})"
    )
    print("call  +5        ->", legion.call("counter", 5))
    legion.cast("counter", 100)
    print("cast +100, get  ->", legion.call(counter, "get"))

    ref = legion.monitor(counter)
    try:
        legion.call(counter, "crash")
    except legion.ProcessExit as exc:
        print("the call failed at once with the callee's reason:", exc.reason)
    down = legion.receive(timeout=5, match=lambda m: isinstance(m, legion.Down) and m.ref == ref)
    print("monitor saw    ->", down.reason)
    exit_signal = legion.receive(timeout=5, match=lambda m: isinstance(m, legion.Exit))
    print("the link delivered (the application traps exits):", exit_signal)
    print("the name was released:", legion.whereis("counter"))


if __name__ == "__main__":
    main()
