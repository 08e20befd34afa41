"""The zygote: clean start, shared, restarted after a crash, stopped with its children."""

from __future__ import annotations

import os
import signal

import psutil
from sandbox_helpers import ESCAPE_OS

from legion.sandbox import evaluate, info, runner, shutdown

CANARY = "legion-canary-5b7e0c1d9a"


def test_zygote_is_a_clean_isolated_interpreter() -> None:
    zygote = psutil.Process(info().zygote_pid)
    cmd = zygote.cmdline()
    assert cmd[1:4] == ["-I", "-S", "-B"]
    assert set(zygote.environ()) <= {"PATH", "LANG"}
    assert zygote.cwd() == "/"


def test_child_has_no_application_modules() -> None:
    ev = evaluate(ESCAPE_OS + "import sys\nsorted(sys.modules)", _guard=False)
    assert ev.ok
    modules = set(ev.value)
    assert "trio" not in modules and "sniffio" not in modules and "psutil" not in modules
    assert "legion.sandbox.runner" not in modules and "legion.supervisor" not in modules
    assert "site" not in modules


def test_zygote_restarts_after_a_crash() -> None:
    first = info().zygote_pid
    os.kill(first, signal.SIGKILL)
    psutil.Process(first).wait(timeout=5) if psutil.pid_exists(first) else None
    ev = evaluate("1 + 1")
    assert ev.ok and ev.value == 2
    assert info().zygote_pid != first


def test_zygote_death_during_an_evaluation_is_a_crash_and_kills_the_child() -> None:
    class Killer:
        def kill_zygote(self) -> int:
            pid = info().zygote_pid
            os.kill(pid, signal.SIGKILL)
            return pid

    ev = evaluate("Killer.kill_zygote()\nwhile True:\n    pass", tools=[Killer], timeout=5)
    assert ev.error_kind == "crashed"
    assert ev.duration < 3
    assert evaluate("2").value == 2


def test_shutdown_stops_the_zygote_and_its_children() -> None:
    info()
    zygote = psutil.Process(info().zygote_pid)
    spares = runner.SPARES.pids()
    shutdown()
    assert not zygote.is_running() or zygote.status() == psutil.STATUS_ZOMBIE
    _gone, alive = psutil.wait_procs(
        [psutil.Process(p) for p in spares if psutil.pid_exists(p)], timeout=5
    )
    assert not alive
    assert evaluate("3").value == 3


def test_canary_in_parent_memory_and_environment_is_not_readable_from_the_child() -> None:
    os.environ["LEGION_TEST_CANARY"] = CANARY
    secret_in_memory = [CANARY] * 3  # kept alive in the parent's heap
    try:
        shutdown()  # the next zygote starts while the canary is in the parent's environment
        attempts = [
            ESCAPE_OS + "dict(os.environ)",
            ESCAPE_OS + "os.read(os.open('/proc/self/environ', 0), 65536)",
            ESCAPE_OS + f"os.read(os.open('/proc/{os.getpid()}/environ', 0), 65536)",
            ESCAPE_OS + f"os.read(os.open('/proc/{os.getpid()}/mem', 0), 65536)",
            "import string, random\n"
            "string.Formatter().get_field('0.__globals__', [random.shuffle], {})[0]",
        ]
        for code in attempts:
            for guard in (True, False):
                ev = evaluate(code, _guard=guard)
                text = f"{ev.value!r} {ev.value_repr} {ev.stdout} {ev.error} {ev.variables}"
                assert CANARY not in text
        assert CANARY not in "".join(
            f"{k}={v}" for k, v in psutil.Process(info().zygote_pid).environ().items()
        )
    finally:
        del os.environ["LEGION_TEST_CANARY"]
        assert secret_in_memory
        shutdown()


def test_evaluation_data_never_reaches_the_zygote_memory() -> None:
    marker = "zygote-must-not-see-" + "d41f2a"

    class Echo:
        def echo(self, s: str) -> str:
            return s

    first = evaluate(f"x = Echo.echo('{marker}')\nx", tools=[Echo])
    assert first.value == marker
    assert evaluate("x", bindings=first.bindings).value == marker
    pid = info().zygote_pid
    needle = marker.encode()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                assert needle not in mem.read(end - start)
            except OSError:
                continue
