"""Bad input on the node's wire fails alone (issue 11 §1, §4, §6; issue 17 §2).

A bad frame, an oversize message, a full mailbox (in the node or in the process), a value nested
too deep, a bad timeout, a descriptor shortage or a foreign socket gets a clear error to whoever
caused it, and the node, the sender and every other process live on. Tests
that could take a node down run it as a service in a subprocess, with applications as
subprocesses; the raw-socket tests speak the wire by hand.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import procs
import pytest
from helpers import kill_and_wait, probe, wait_down
from procs import Probe

import legion
from legion.supervisor import client, wire
from legion.supervisor.process import EXIT_NO_REASON

HERE = str(Path(__file__).parent)


class ServiceNode:
    """A node run as a service in a subprocess; its log lines are read as they come."""

    def __init__(self, path: str, process: subprocess.Popen[str]) -> None:
        self.path = path
        self.process = process
        self.lines: list[str] = []

    def wait_log(self, pattern: str, timeout: float = 30) -> str:
        """The first log line (read from now on) matching `pattern`; fails after `timeout`."""
        stderr = self.process.stderr
        assert stderr is not None
        while True:
            ready, _, _ = select.select([stderr], [], [], timeout)
            assert ready, f"the node logged no line matching {pattern!r}: {self.lines}"
            line = stderr.readline()
            assert line, f"the node exited (status {self.process.poll()}): {self.lines}"
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def env(self) -> dict[str, str]:
        path = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
        return {**os.environ, "LEGION_NODE": self.path, "PYTHONPATH": path}

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def service_node(tmp_path: Path) -> Iterator[Callable[..., ServiceNode]]:
    """Start service nodes: `start(*options, nofile=None, env=None)`; all stopped at the end."""
    nodes: list[ServiceNode] = []

    def start(
        *options: str, nofile: int | None = None, env: dict[str, str] | None = None
    ) -> ServiceNode:
        path = str(tmp_path / f"node{len(nodes)}.sock")

        def limit_descriptors() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        process = subprocess.Popen(
            [sys.executable, "-m", "legion.supervisor.node", "--socket", path, *options],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=limit_descriptors,
        )
        node = ServiceNode(path, process)
        nodes.append(node)
        node.wait_log("listening on")
        return node

    yield start
    for node in nodes:
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(30)
        assert node.process.stderr is not None
        node.process.stderr.close()


class App:
    """An application in a subprocess that answers commands on stdin with JSON lines."""

    SCRIPT = textwrap.dedent(
        """
        import json, sys
        import legion
        from procs import Probe

        probe = legion.spawn(Probe, {})
        print(json.dumps("ready"), flush=True)
        for line in sys.stdin:
            if line.strip() == "echo":
                print(json.dumps(legion.call(probe, ("echo", "alive"))), flush=True)
        """
    )

    def __init__(self, node: ServiceNode) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=node.env(),
        )
        assert self.ask(None) == "ready"

    def ask(self, command: str | None) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the application exited with status {self.process.wait()}"
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        assert self.process.wait(30) == 0
        self.process.stdout.close()


def _run_app(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def _hello() -> bytes:
    return wire.encode(wire.Hello([], "/", None, False))


# -- the first frame ------------------------------------------------------------------------------

FIRST_FRAMES = {
    "garbage bytes": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a length beyond the limit": struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 16,
    "not msgpack": wire.frame(b"\xc1\xc1\xc1\xc1"),
    "truncated msgpack": wire.frame(_hello()[4:-3]),
    "a frame cut short by the peer": _hello()[:-3],
    "a frame that is not Hello": wire.encode(wire.Sync(1)),
    "a frame nested too deep": wire.frame(
        b"\x94" + wire._plain.encode("Send") + b"\x91" * 100_000 + b"\xc0\xc0\x00"
    ),
    "a Hello of the wrong shape": wire.frame(wire._plain.encode(["Hello", 1, 2])),
    "a Hello with a malformed Pid": wire.frame(
        wire._plain.encode(["Hello", [], "/", msgspec.msgpack.Ext(1, b"\x91\x01"), False])
    ),
}


def test_a_connection_whose_first_frame_is_not_a_hello_is_refused_alone(
    service_node: Callable[..., ServiceNode],
) -> None:
    node = service_node()
    app = App(node)
    for case, first in FIRST_FRAMES.items():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
            bad.connect(node.path)
            bad.sendall(first)
            bad.shutdown(socket.SHUT_WR)
            assert bad.recv(65536) == b"", f"{case}: answered"  # refused: closed, no Welcome
        assert "refused a connection" in node.wait_log("legion node:"), case
        assert app.ask("echo") == "alive", case
    good = App(node)  # a new application joins as before
    assert good.ask("echo") == "alive"
    good.close()
    app.close()
    assert node.alive()


def test_a_frame_beyond_the_limit_ends_its_connection_alone(
    service_node: Callable[..., ServiceNode],
) -> None:
    """A peer that skips the sender's size check (a raw socket here) loses its connection,
    with a logged reason; the node and the other applications carry on."""
    node = service_node(env={"LEGION_MAX_FRAME_BYTES": "65536"})
    app = App(node)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rogue:
        rogue.connect(node.path)
        rogue.sendall(_hello())
        welcome = wire.decode(next(wire.FrameReader().feed(rogue.recv(65536))))
        assert type(welcome) is wire.Welcome
        assert welcome.max_frame == 65536
        rogue.sendall(struct.pack("<I", 65537) + b"\x00" * 1024)
        assert rogue.recv(65536) == b""
    line = node.wait_log("closed the connection")
    assert "65537 bytes exceeds the limit of 65536" in line
    assert app.ask("echo") == "alive"
    app.close()
    assert node.alive()


# -- oversize messages are refused at the sender --------------------------------------------------


def test_an_oversize_message_is_refused_at_the_sender_and_nothing_is_lost() -> None:
    p = probe()
    limit = wire.DEFAULT_MAX_FRAME
    big = b"x" * limit
    with pytest.raises(legion.MessageTooLarge, match=f"exceeds the node's limit of {limit} bytes"):
        legion.send(p, big)
    with pytest.raises(legion.MessageTooLarge) as info:
        legion.call(p, ("echo", big))
    assert info.value.limit == limit and info.value.size > limit
    assert isinstance(info.value, legion.LegionError)
    assert legion.call(p, ("echo", "the connection is intact")) == "the connection is intact"
    kill_and_wait(p)


def test_the_frame_limit_is_configurable_and_binds_processes_too() -> None:
    out = _run_app(
        """
        import json, legion
        from procs import Probe, crash_with, emit_then_report

        legion.configure(max_frame_bytes=4096)
        p = legion.spawn(Probe, {})
        result = {"small": legion.call(p, ("echo", b"x" * 3000)) == b"x" * 3000}
        try:
            legion.send(p, b"x" * 5000)
        except legion.MessageTooLarge as exc:
            result["app"] = str(exc)
        result["process"] = []
        for request in [("sendbig", legion.self(), 5000), ("big", 5000)]:
            # a process is refused the same way: its handler raises, it crashes alone
            p = legion.spawn(Probe, {})
            try:
                legion.call(p, request)
            except legion.ProcessExit as exc:
                result["process"].append(str(exc.reason))
        # a crash reason too large for a frame reaches the node cut short, still a Crash
        pid, ref = legion.spawn(crash_with, 10000, monitor=True)
        down = legion.receive(timeout=30, match=lambda m: isinstance(m, legion.Down))
        result["crash"] = [down.reason.type, len(down.reason.message)]
        # a telemetry event too large for a frame is dropped, never the frame it rides with
        emitter = legion.spawn(emit_then_report, [legion.self(), 10000])
        result["emitted"] = legion.receive(timeout=30, match=lambda m: m == "emitted")
        legion.send(emitter, "end")
        result["after"] = legion.call(legion.spawn(Probe, {}), ("echo", "alive"))
        print(json.dumps(result))
        """
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["small"] is True
    assert "limit of 4096 bytes" in result["app"]
    assert len(result["process"]) == 2
    for reason in result["process"]:
        assert "MessageTooLarge" in reason and "limit of 4096" in reason
    assert result["crash"] == ["ValueError", 4096 // 16]
    assert result["emitted"] == "emitted"
    assert "telemetry event ('test', 'big') dropped" in out.stderr
    assert "over the node's limit of 4096 (max_frame_bytes)" in out.stderr
    assert result["after"] == "alive"


@pytest.mark.parametrize("value", [0, 1023, "lots", 2**32])
def test_a_bad_frame_limit_is_a_config_error(value: Any) -> None:
    out = _run_app(
        f"""
        import legion
        try:
            legion.configure(max_frame_bytes={value!r})
            legion.self()
        except legion.ConfigError as exc:
            print(exc)
        """
    )
    assert "max_frame_bytes must be" in out.stdout, out.stdout + out.stderr


# -- the mailbox bound ----------------------------------------------------------------------------


def test_a_process_that_leaves_its_mailbox_unread_past_the_bound_is_killed_with_the_reason() -> (
    None
):
    out = _run_app(
        """
        import json, threading, urllib.request
        import legion
        from procs import Probe, sleeper

        legion.configure(max_frame_bytes=65536, max_mailbox_bytes=1 << 20)
        port = legion.supervisor.client.get().serve_metrics(0)
        other = legion.spawn(Probe, {})
        blocked, ref = legion.spawn(sleeper, monitor=True)
        result = {}

        def caller():
            try:
                legion.call(blocked, "are you there?", timeout=60)
            except legion.ProcessExit as exc:
                result["caller"] = exc.reason

        thread = threading.Thread(target=caller)
        thread.start()
        for _ in range(100):  # 6 MB: past the bound and what the kernel buffers
            legion.send(blocked, b"z" * 60000)
        down = legion.receive(timeout=60, match=lambda m: isinstance(m, legion.Down))
        thread.join(60)
        result["down"] = down.reason
        result["other"] = legion.call(other, ("echo", "alive"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
            lines = page.read().decode().splitlines()
        result["metric"] = [x for x in lines if x.startswith("legion_mailbox_overflows")]
        print(json.dumps(result))
        """
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["down"] == ["mailbox_full", 1 << 20]
    assert result["caller"] == ["mailbox_full", 1 << 20]
    assert result["other"] == "alive"
    assert result["metric"] == ["legion_mailbox_overflows_total 1.0"]
    assert "over its mailbox limit of 1048576 bytes" in out.stderr
    assert "procs.sleeper" in out.stderr


FLOODED_WHILE_BUSY = {
    "an agent whose turn waits": (
        """
        from agents_for_tests import HumanAgent
        from legion import testing

        legion.configure(max_frame_bytes=65536, max_mailbox_bytes=131072)
        script = testing.ScriptedModel(
            [testing.eval_and_continue("HumanTool.ask('wait')"), testing.returns("never")]
        )
        script.__enter__()
        busy = legion.start_link(HumanAgent)
        request = "wait for a person"

        def busy_now():
            legion.receive(
                timeout=30,
                match=lambda m: isinstance(m, dict) and m.get("type") == "legion.human_question",
            )

        def flood(pid, message):  # each cast queues a turn behind the one that waits
            legion.cast(pid, message)
            legion.get_messages(pid)  # answered after the cast was queued: the node holds none
        """,
        "agents_for_tests.HumanAgent",
        131072,
    ),
    "a server whose async handler awaits": (
        """
        from procs import AsyncProbe, Probe

        legion.configure(max_frame_bytes=4096, max_mailbox_bytes=8192)
        busy = legion.spawn(AsyncProbe)
        silent = legion.spawn(Probe, {"owner": legion.self()})
        request = ("call", silent, ("noreply",))  # its handler awaits an answer that never comes

        def busy_now():
            legion.receive(timeout=30, match=lambda m: isinstance(m, list) and m[0] == "pending")

        def flood(pid, message):  # its reader files them while the handler awaits
            legion.send(pid, message)
            legion.supervisor.client.get().sync()  # one per node tick: the node holds none
        """,
        "procs.AsyncProbe",
        8192,
    ),
}


@pytest.mark.parametrize("case", FLOODED_WHILE_BUSY.values(), ids=FLOODED_WHILE_BUSY.keys())
def test_a_process_that_reads_but_cannot_handle_a_flood_ends_with_mailbox_full(
    case: tuple[str, str, int],
) -> None:
    setup, name, limit = case
    agents = str(Path(HERE).parent / "agents")
    out = _run_app(
        "import json, threading, urllib.request\nimport legion\n"
        + textwrap.dedent(setup)
        + textwrap.dedent(
            """
            port = legion.supervisor.client.get().serve_metrics(0)
            other = legion.spawn(__import__("procs").Probe, {})
            ref = legion.monitor(busy)
            result = {}

            def caller():
                try:
                    legion.call(busy, request, timeout=60)
                except legion.ProcessExit as exc:
                    result["caller"] = exc.reason

            thread = threading.Thread(target=caller)
            thread.start()
            busy_now()
            try:
                for _ in range(60):  # 60 x 4000 bytes: past the bound, read as they come
                    flood(busy, b"z" * 4000)
            except legion.LegionError:
                pass  # the agent ended between a cast and its barrier
            down = legion.receive(timeout=30, match=lambda m: isinstance(m, legion.Down))
            thread.join(60)
            result["down"] = down.reason
            result["other"] = legion.call(other, ("echo", "alive"))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
                lines = page.read().decode().splitlines()
            result["metric"] = [x for x in lines if x.startswith("legion_mailbox_overflows")]
            print(json.dumps(result))
            """
        ),
        env={"PYTHONPATH": os.pathsep.join([HERE, agents, os.environ.get("PYTHONPATH", "")])},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["down"] == ["mailbox_full", limit]
    assert result["caller"] == ["mailbox_full", limit]
    assert result["other"] == "alive"
    assert result["metric"] == ["legion_mailbox_overflows_total 1.0"]
    assert f"({name}) ended itself" in out.stderr, out.stderr
    assert f"passed its mailbox limit of {limit} bytes" in out.stderr


def test_messages_handled_as_they_come_never_fill_the_mailbox() -> None:
    """Far more than the bound passes through a server and an agent that keep up: only what
    waits counts, so neither is ended."""
    agents = str(Path(HERE).parent / "agents")
    out = _run_app(
        """
        import json
        import legion
        from agents_for_tests import NoToolAgent
        from legion import testing
        from procs import AsyncProbe

        legion.configure(max_frame_bytes=65536, max_mailbox_bytes=131072)
        server = legion.spawn(AsyncProbe)
        counts = [legion.call(server, ("count", b"z" * 4000)) for _ in range(100)]
        with testing.FunctionModel(lambda request: testing.returns("ok")):
            agent = legion.start_link(NoToolAgent, max_message_length=100)
            answers = {legion.call(agent, "z" * 4000) for _ in range(100)}
        print(json.dumps([counts[-1], sorted(answers), legion.call(server, ("count",))]))
        """,
        env={"PYTHONPATH": os.pathsep.join([HERE, agents, os.environ.get("PYTHONPATH", "")])},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [100, ["ok"], 101]  # 400 KB each, both alive


def test_a_mailbox_bound_below_one_frame_is_a_config_error() -> None:
    out = _run_app(
        """
        import legion
        legion.configure(max_frame_bytes=65536, max_mailbox_bytes=4096)
        try:
            legion.self()
        except legion.ConfigError as exc:
            print(exc)
        """
    )
    assert "max_mailbox_bytes must be a number of bytes from 131072" in out.stdout, out.stderr


def test_legion_node_takes_the_frame_and_mailbox_bounds(tmp_path: Path) -> None:
    path = str(tmp_path / "node.sock")
    bounds = ["--max-frame-bytes", "4096", "--max-mailbox-bytes", "65536"]
    process = subprocess.Popen(
        [sys.executable, "-m", "legion", "node", "--socket", path, *bounds],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    node = ServiceNode(path, process)
    try:
        node.wait_log("listening on")
        out = _run_app(
            """
            import json, legion
            from procs import sleeper

            result = {}
            try:
                legion.send(legion.self(), b"x" * 5000)
            except legion.MessageTooLarge as exc:
                result["frame"] = exc.limit
            blocked, ref = legion.spawn(sleeper, monitor=True)
            for _ in range(300):  # 1.2 MB: past the bound and what the kernel buffers
                legion.send(blocked, b"z" * 4000)
            down = legion.receive(timeout=60, match=lambda m: isinstance(m, legion.Down))
            result["down"] = down.reason
            print(json.dumps(result))
            """,
            env=node.env(),
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"frame": 4096, "down": ["mailbox_full", 65536]}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        assert process.stderr is not None
        process.stderr.close()
    bad = subprocess.run(
        [sys.executable, "-m", "legion", "node", "--socket", path, "--max-mailbox-bytes", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "max_mailbox_bytes must be a number of bytes from" in bad.stderr


# -- descriptors ----------------------------------------------------------------------------------


def test_running_out_of_descriptors_is_a_spawn_error_and_the_connection_lives(
    service_node: Callable[..., ServiceNode],
) -> None:
    node = service_node(nofile=64)
    out = _run_app(
        """
        import json, legion
        from procs import Probe

        pids, error = [], None
        for _ in range(200):
            try:
                pids.append(legion.spawn(Probe, {}))
            except legion.SpawnError as exc:
                error = str(exc)
                break
        answers = [legion.call(p, ("echo", "alive")) for p in pids]
        ref = legion.monitor(pids[0])
        legion.exit(pids[0], "kill")
        legion.receive(timeout=30, match=lambda m: isinstance(m, legion.Down) and m.ref == ref)
        again = legion.call(legion.spawn(Probe, {}), ("echo", "spawned again"))
        print(json.dumps({"count": len(pids), "error": error, "answers": answers, "again": again}))
        """,
        node.env(),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert 5 < result["count"] < 200
    assert "Too many open files" in result["error"]
    assert "ulimit -n" in result["error"]
    assert set(result["answers"]) == {"alive"}
    assert result["again"] == "spawned again"
    node.wait_log("cannot start Probe.*Too many open files")
    assert node.alive()


def test_a_spawn_request_too_large_for_the_zygote_is_a_spawn_error() -> None:
    out = _run_app(
        """
        import sys, legion
        from procs import Probe

        sys.path.append("x" * 300_000)  # the spawn request carries sys.path to the zygote
        try:
            legion.spawn(Probe, {})
        except legion.SpawnError as exc:
            print(exc)
        sys.path.pop()
        print(legion.call(legion.spawn(Probe, {}), ("echo", "alive")))
        """
    )
    assert out.returncode == 0, out.stderr
    error, after = out.stdout.splitlines()
    assert "cannot hand the spawn to the zygote: [Errno 90] Message too long" in error
    assert after == "alive"


# -- trust at the edge ----------------------------------------------------------------------------

PLANTED = textwrap.dedent(
    """
    import os, socket, sys
    uid = int(sys.argv[2])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # another user, as a planted socket's owner would be
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sys.argv[1])
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    conn.settimeout(30)
    received = b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        received += data
    print(len(received), flush=True)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a socket as another uid needs root")
def test_a_node_socket_of_another_user_is_refused_before_anything_is_sent() -> None:
    nobody = 65534
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:
        os.chmod(shared, 0o777)  # a shared folder: anyone may create a socket in it
        path = os.path.join(shared, "node.sock")
        planted = subprocess.Popen(
            [sys.executable, "-c", PLANTED, path, str(nobody)], stdout=subprocess.PIPE, text=True
        )
        assert planted.stdout is not None
        assert planted.stdout.readline().strip() == "ready"
        out = _run_app(
            """
            import legion
            try:
                legion.self()
            except legion.NodeUnavailable as exc:
                print(exc)
            """,
            {"LEGION_NODE": path},
        )
        received = planted.stdout.readline().strip()
        assert planted.wait(30) == 0
        planted.stdout.close()
    assert received == "0"  # not even the Hello
    message = out.stdout
    assert f"LEGION_NODE={path!r}" in message, out.stderr
    assert f"served by uid {nobody}" in message
    assert f"runs as uid {os.getuid()}" in message


# -- values and crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "big", [2**64, -(2**63) - 1, [1, {"n": 10**30}]], ids=["max", "min", "inside"]
)
def test_an_int_beyond_msgpack_is_the_same_type_error_at_the_sender(big: Any) -> None:
    p = probe()
    with pytest.raises(TypeError, match=r"builtins\.int: messages must be msgspec-encodable"):
        legion.send(p, big)
    with pytest.raises(TypeError, match=r"ints from -2\*\*63 to 2\*\*64 - 1"):
        legion.call(p, ("echo", big))
    with pytest.raises(TypeError, match=r"builtins\.int"):
        legion.stop(p, big)  # a value in a control frame (an exit reason) too
    assert legion.call(p, ("echo", [2**64 - 1, -(2**63)])) == [2**64 - 1, -(2**63)]
    kill_and_wait(p)


SURROGATE_VALUES = {
    "str": "caf\udce9.txt",
    "inside": [1, {"name": "caf\udce9.txt"}],
    "dict key": {"caf\udce9.txt": 1},
}


@pytest.mark.parametrize("value", SURROGATE_VALUES.values(), ids=SURROGATE_VALUES.keys())
def test_a_str_with_a_lone_surrogate_is_the_same_type_error_at_the_sender(value: Any) -> None:
    """What os.fsdecode makes of a non-UTF-8 file name: a TypeError naming the surrogate and
    the two ways out, as for any value the wire cannot carry (never a UnicodeEncodeError)."""
    p = probe()
    fix = r"encode\('utf-8', 'surrogateescape'\).*backslashreplace"
    with pytest.raises(TypeError, match=r"lone surrogate \('\\udce9' at index 3 of .*" + fix):
        legion.send(p, value)
    with pytest.raises(TypeError, match="lone surrogate"):
        legion.call(p, ("echo", value))
    with pytest.raises(TypeError, match="lone surrogate"):
        legion.stop(p, value)  # in a control frame (an exit reason) too
    assert legion.call(p, ("echo", "café")) == "café"  # nothing was sent; p is fine
    kill_and_wait(p)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


SENDS_OF_A_DEEP_VALUE: dict[str, Callable[[legion.Pid, Any], Any]] = {
    "send": lambda p, v: legion.send(p, v),
    "call": lambda p, v: legion.call(p, ("echo", v)),
    "cast": lambda p, v: legion.cast(p, v),
    "reply": lambda p, v: legion.reply(legion.From(p, client.get().make_ref()), v),
    "spawn argument": lambda p, v: legion.spawn(Probe, v),
    "exit reason": lambda p, v: legion.exit(p, v),
    "stop reason": lambda p, v: legion.stop(p, v),
}


@pytest.mark.parametrize("how", SENDS_OF_A_DEEP_VALUE.values(), ids=SENDS_OF_A_DEEP_VALUE.keys())
def test_a_value_nested_too_deep_is_a_type_error_at_the_sender(
    how: Callable[[legion.Pid, Any], Any],
) -> None:
    p = probe()
    with pytest.raises(TypeError, match=r"nested this deep.*recursion limit \(sys\.getrec"):
        how(p, _nested(100_000))
    assert legion.call(p, ("echo", _nested(50))) == _nested(50)  # nothing was sent; p is fine
    kill_and_wait(p)


# -- exit reasons the wire cannot carry as they are ------------------------------------------------

CAFE = "caf\\udce9.txt"  # what the wire carries for os.fsdecode(b"caf\xe9.txt"): the escape
ODD_ENDINGS: dict[str, Any] = {
    "surrogate in a crash message": legion.Crash("FileNotFoundError", f"no such file: {CAFE}"),
    "surrogate reason": CAFE,
    "surrogate inside a reason": ("bad_file", {"name": CAFE}),
    "exception whose str raises": legion.Crash(
        "procs.UnprintableError", "<str() of this UnprintableError raised ValueError>"
    ),
    "reason nested too deep": legion.Crash(
        "legion.UnsendableReason",
        "the process ended with a reason of type tuple that can neither be sent nor shown "
        f"({wire._too_deep()}); its repr() failed too",
    ),
}


@pytest.mark.parametrize("target", ["server", "function"])
@pytest.mark.parametrize("kind", ODD_ENDINGS)
def test_an_exit_reason_the_wire_cannot_carry_still_reaches_the_node(
    kind: str, target: str
) -> None:
    """A lone surrogate (a non-UTF-8 file name in an exception message), an exception whose
    `str` raises, a reason nested too deep: the node gets a reason that says what happened,
    never "normal" (which would fire no link and restart no transient child)."""
    expected = ODD_ENDINGS[kind]
    if target == "server":
        pid, ref = legion.spawn(procs.EndWith, monitor=True)
        try:
            assert legion.call(pid, kind) == "stopping"  # a Stop
        except legion.ProcessExit as exc:  # a crash
            assert exc.reason == expected
    else:
        pid, ref = legion.spawn(procs.end_with_in_function, kind, monitor=True)
    assert wait_down(ref).reason == expected


def test_a_process_that_cannot_send_its_reason_is_never_reported_normal() -> None:
    """If the last frame cannot be written at all, the process exits with a status the node
    reports as a crash (never 0, which it would report as "normal")."""
    _, ref = legion.spawn(procs.unable_to_send_its_reason, monitor=True)
    reason = wait_down(ref).reason
    assert reason == legion.Crash(
        "SystemExit", f"the process exited with status {EXIT_NO_REASON} without a reason"
    )


def test_a_crash_is_reported_when_stderr_is_a_closed_pipe(tmp_path: Path) -> None:
    """`python app.py 2>&1 | head`, head gone: printing the traceback fails with
    BrokenPipeError, and the crash must still reach the caller as the crash it is."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import legion

            class Boom(legion.Server):
                def handle_call(self, request, from_):
                    raise RuntimeError("the crash")

            if __name__ == "__main__":
                for _ in range(2):
                    try:
                        legion.call(legion.spawn(Boom), "go")
                    except legion.ProcessExit as exc:
                        print(repr(exc.reason), flush=True)
            """
        )
    )
    app = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert app.stderr is not None and app.stdout is not None
    app.stderr.close()  # the reader is gone before anything is written
    lines = app.stdout.read().splitlines()
    app.stdout.close()
    app.wait(60)
    assert lines == ["Crash('RuntimeError', 'the crash')"] * 2


# -- timeouts -------------------------------------------------------------------------------------


class IdleFromInit(legion.Server):
    """Sets its idle timeout in init, from the start argument."""

    def init(self, arg: Any) -> None:
        self.idle_timeout = arg


BAD_TIMEOUTS = [float("nan"), -1, -0.5]


def _class_with_idle_timeout(value: Any) -> None:
    class Idle(legion.Server):
        idle_timeout = value


TIMEOUT_TAKERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "Reply": (lambda t: legion.Reply("v", timeout=t), "legion.Reply"),
    "NoReply": (lambda t: legion.NoReply(timeout=t), "legion.NoReply"),
    "idle_timeout on the class": (_class_with_idle_timeout, "Idle.idle_timeout"),
    "telemetry.flush": (lambda t: legion.telemetry.flush(t), "legion.telemetry.flush"),
    "sandbox evaluate": (lambda t: _sandbox().evaluate("1", timeout=t), "legion.sandbox"),
}


def _sandbox() -> Any:
    import legion.sandbox

    return legion.sandbox


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=["nan", "-1", "-0.5"])
@pytest.mark.parametrize("taker", TIMEOUT_TAKERS.values(), ids=TIMEOUT_TAKERS.keys())
def test_a_nan_or_negative_timeout_is_a_value_error_naming_the_rule(
    taker: tuple[Callable[[Any], Any], str], timeout: float
) -> None:
    make, what = taker
    with pytest.raises(ValueError, match=rf"{re.escape(what)}: timeout must be .*seconds"):
        make(timeout)


def test_an_idle_timeout_set_in_init_is_checked_at_start() -> None:
    with pytest.raises(legion.InitError, match=r"IdleFromInit\.idle_timeout: timeout must be"):
        legion.start(IdleFromInit, float("nan"))
    pid = legion.start(IdleFromInit, 30)  # a good one starts
    assert pid is not None
    kill_and_wait(pid)


def test_a_zero_sandbox_timeout_is_refused_and_an_infinite_one_runs() -> None:
    with pytest.raises(
        ValueError, match=r"legion.sandbox: timeout must be a number of seconds > 0"
    ):
        _sandbox().evaluate("1", timeout=0)
    assert _sandbox().evaluate("6 * 7", timeout=math.inf).value == 42


CRASHES = {
    "in handle_call": """
        pid = legion.spawn(Boom)
        try:
            legion.call(pid, "crash")
        except legion.ProcessExit:
            pass
        """,
    "in init, started by the application, uncaught": """
        legion.start_link(Boom, "crash in init")
        """,
    "in init, started by a supervisor": """
        sup = legion.start_link(legion.DynamicSupervisor, None)
        try:
            legion.DynamicSupervisor.start_child(sup, legion.child_spec(Boom, "crash in init"))
        except legion.StartChildError:
            pass
        """,
}


@pytest.mark.parametrize("body", CRASHES.values(), ids=CRASHES.keys())
def test_a_crash_traceback_is_printed_once(tmp_path: Path, body: str) -> None:
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent(
            """
            import legion

            class Boom(legion.Server):
                def init(self, arg):
                    if arg:
                        raise RuntimeError("the unique crash text")

                def handle_call(self, request, from_):
                    raise RuntimeError("the unique crash text")

            if __name__ == "__main__":
            """
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.stderr.count('raise RuntimeError("the unique crash text")') == 1, out.stderr
    assert out.stderr.count("RuntimeError: the unique crash text") >= 1


def test_a_fault_in_a_process_runtime_side_is_its_exit_reason_never_a_silent_exit() -> None:
    """A bug in the runtime's own side of a process (here its reader failing on a frame) ends
    the process with that exception as its reason, traceback printed once, never a bare
    `exited with status 1 without a reason`; the traceback travels in the reason."""
    pid, ref = legion.spawn(procs.BreakOwnRuntime, monitor=True)
    legion.cast(pid, ("break", legion.self()))
    assert legion.receive(timeout=10) == "broken"
    legion.send(pid, "any frame")
    down = legion.receive(timeout=10, match=lambda m: isinstance(m, legion.Down))
    assert down.ref == ref
    assert isinstance(down.reason, legion.Crash), down.reason
    assert down.reason.type == "RuntimeError"
    assert down.reason.message == "the reader could not file a frame"
    assert "in reader" in down.reason.traceback, down.reason.traceback
