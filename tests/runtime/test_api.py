"""The process API from the application: errors, spawning rules, async twins (trio, asyncio)."""

from __future__ import annotations

import socket
import struct

import pytest
from helpers import kill_and_wait, probe, wait_down
from procs import AsyncProbe, Probe, async_echo_loop, echo_loop, spin

import legion
from legion.supervisor import client


def test_a_message_that_msgpack_cannot_carry_is_a_type_error_naming_the_type() -> None:
    p = probe()
    with pytest.raises(TypeError, match=r"builtins\.object"):
        legion.send(p, {"fine": [1, 2], "bad": object()})
    with pytest.raises(TypeError, match=r"socket\.socket"):
        legion.call(p, ("echo", socket.socket()))
    with pytest.raises(TypeError, match="msgspec-encodable"):
        legion.cast(p, {1j})
    assert legion.call(p, ("echo", "the connection is intact")) == "the connection is intact"
    kill_and_wait(p)


def test_values_keep_their_types_across_processes() -> None:
    p = probe()
    me = legion.self()
    value = {"pid": me, "nested": [me, {"crash": legion.Crash("E", "m")}], "bytes": b"\x00"}
    assert legion.call(p, ("echo", value)) == value
    kill_and_wait(p)


def test_spawning_a_class_the_worker_cannot_import_is_a_clear_error() -> None:
    ghost = type("Ghost", (legion.Server,), {"__module__": "no_such_module_anywhere"})
    with pytest.raises(
        legion.SpawnError, match="cannot import Ghost from module 'no_such_module_anywhere'"
    ):
        legion.spawn(ghost)


def test_spawning_a_class_defined_in_a_function_is_refused() -> None:
    class Local(legion.Server):
        pass

    with pytest.raises(TypeError, match="defined inside a function"):
        legion.spawn(Local)


def test_spawn_with_a_taken_name_fails_and_starts_nothing() -> None:
    p = probe()
    legion.register("api-taken", p)
    with pytest.raises(legion.AlreadyRegistered):
        legion.start_link(Probe, name="api-taken")
    kill_and_wait(p)


def test_a_plain_function_process_answers_calls_with_reply() -> None:
    pid = legion.spawn(echo_loop)
    legion.send(pid, ["echo", legion.self(), "pong"])
    assert legion.receive(timeout=10) == "pong"
    legion.send(pid, "stop")
    ref = legion.monitor(pid)
    assert wait_down(ref).reason in ("normal", "noproc")


def test_kill_ends_a_process_stuck_in_c_code() -> None:  # X2
    pid, ref = legion.spawn(spin, monitor=True)
    legion.exit(pid, "shutdown")  # not trapping: the node kills it, whatever it is doing
    assert wait_down(ref).reason == "shutdown"


def test_X3_a_malformed_frame_fails_alone() -> None:
    endpoint = client.get()
    body = b"\xc1 not msgpack"
    endpoint._write(struct.pack("<I", len(body)) + body)
    p = probe()
    assert legion.call(p, ("echo", "still talking")) == "still talking"
    kill_and_wait(p)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_awaitable_twins_work_under_trio_and_asyncio(anyio_backend: str) -> None:
    pid = await legion.astart_link(AsyncProbe)
    assert pid is not None
    assert await legion.acall(pid, ("count",)) == 1
    echo = await legion.aspawn(async_echo_loop)
    await legion.asend(echo, ["echo", legion.self(), "async pong"])
    assert await legion.areceive(timeout=10) == "async pong"
    await legion.aregister("api-async", echo)
    assert await legion.awhereis("api-async") == echo
    await legion.aunregister("api-async")
    await legion.alink(echo)
    await legion.aunlink(echo)
    legion.send(echo, "stop")
    await legion.astop(pid)
    assert await legion.areceive(timeout=10) == legion.Exit(pid, "normal")  # it was linked to us
    with pytest.raises(TimeoutError):
        await legion.areceive(timeout=0.01)
    slow = await legion.astart(AsyncProbe)
    assert slow is not None
    with pytest.raises(legion.CallTimeout):
        await legion.acall(slow, ("sleep", 1), timeout=0.05)
    await legion.astop(slow)


def test_concurrent_calls_from_threads_each_get_their_own_reply() -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = probe()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: legion.call(p, ("echo", i)), range(200)))
    assert results == list(range(200))
    kill_and_wait(p)


def test_import_legion_stays_light() -> None:
    """The application pays for msgspec, not for trio, litellm or prometheus-client."""
    import subprocess
    import sys

    code = (
        "import sys, legion\n"
        "print(sorted(m for m in ('trio', 'litellm', 'prometheus_client', 'pyseccomp') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
