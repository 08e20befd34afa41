"""Hot reload benchmark: from saving a file to every live agent running the new code.

    uv run --locked --extra dev python benchmarks/bench_reload.py

With 10 and 100 live agents (a tool module and an agent module in a temporary directory):
* save → reloaded: the file is rewritten, the watcher (`legion.reload.watch`) sees it and every
  live agent switches (measured until the RELOAD telemetry event arrives);
* `legion.reload(...)` alone, without the watcher's debounce;
* baseline in the same run: stopping and restarting the same agents, what a reload spares.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import legion
from legion.reload import watch

TOOLS = '''
import legion

class Greeter(legion.Tool):
    """Greets people."""

    def {fn}(self, name: str) -> str:
        """Say hello."""
        return "hello " + name
'''

AGENT = '''
import legion
from {tools} import Greeter

class Host(legion.Agent):
    """Hosts guests."""
    tools = [Greeter]
'''


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="legion-reload-bench-"))
    sys.path.insert(0, str(base))
    print("legion reload benchmark, 2 cores")
    for n in (10, 100):
        tools, agent = f"bench_tools_{n}", f"bench_agent_{n}"
        (base / f"{tools}.py").write_text(textwrap.dedent(TOOLS.format(fn="hello")))
        (base / f"{agent}.py").write_text(textwrap.dedent(AGENT.format(tools=tools)))
        module = importlib.import_module(agent)
        pids = [legion.start_link(module.Host) for _ in range(n)]

        done = threading.Event()
        on_reload = [legion.telemetry.RELOAD]
        legion.telemetry.attach("bench", on_reload, lambda *a, done=done: done.set())
        watcher = watch([str(base)])
        t = time.perf_counter()
        (base / f"{tools}.py").write_text(textwrap.dedent(TOOLS.format(fn="hi")) + "\n# v2\n")
        done.wait(60)
        on_save = time.perf_counter() - t
        watcher.stop()
        legion.telemetry.detach("bench")
        took = watcher.results[-1].reloaded if watcher.results else []

        (base / f"{tools}.py").write_text(textwrap.dedent(TOOLS.format(fn="hey")) + "\n# v3\n")
        t = time.perf_counter()
        result = legion.reload([tools])
        explicit = time.perf_counter() - t

        t = time.perf_counter()
        for pid in pids:
            if pid is not None:
                legion.stop(pid)
        pids = [legion.start_link(module.Host) for _ in range(n)]
        restart = time.perf_counter() - t
        print(
            f"{n:>4} live agents: save -> all on new code {on_save * 1e3:,.0f} ms "
            f"({len(took)} switched; includes the watcher's 50 ms debounce); "
            f"legion.reload {explicit * 1e3:,.0f} ms ({len(result.reloaded)} switched)  |  "
            f"baseline: stop + restart all {restart * 1e3:,.0f} ms "
            f"(x{restart / explicit:.1f} of the reload)"
        )
        for pid in pids:
            if pid is not None:
                legion.stop(pid)
    legion.shutdown()


if __name__ == "__main__":
    main()
