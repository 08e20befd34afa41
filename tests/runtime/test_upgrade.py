"""G10: code_change upgrades a running server between two messages."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from helpers import kill_and_wait

import legion

V1 = """
import legion

class Store(legion.Server):
    vsn = 1

    def init(self, arg):
        self.items = []

    def handle_call(self, request, from_):
        if request[0] == "add":
            self.items.append(request[1])
        return {"vsn": 1, "items": self.items}
"""

V2 = """
import legion

class Store(legion.Server):
    vsn = 2

    def handle_call(self, request, from_):
        if request[0] == "add":
            self.items[request[1]] = self.count
            self.count += 1
        return {"vsn": 2, "items": self.items, "count": self.count}

    def code_change(self, old_vsn, extra):
        assert old_vsn == 1, old_vsn
        self.items = {item: i for i, item in enumerate(self.items)}
        self.count = len(self.items) + extra
"""

BROKEN = V2.replace("assert old_vsn == 1, old_vsn", "raise ValueError('cannot migrate')")


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    name = f"store_{tmp_path.name[-8:]}".replace("-", "_")
    (tmp_path / "store_mod_name").write_text(name)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(V1))
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def _start(module_dir: Path) -> tuple[legion.Pid, Path]:
    import importlib

    name = (module_dir / "store_mod_name").read_text()
    module = importlib.import_module(name)
    pid = legion.start(module.Store)
    assert pid is not None
    return pid, module_dir / f"{name}.py"


@pytest.mark.anyio
async def test_G10_code_change_migrates_state_atomically_with_respect_to_calls(
    module_dir: Path,
) -> None:
    pid, source = _start(module_dir)
    for item in ("a", "b"):
        await legion.acall(pid, ("add", item))
    source.write_text(textwrap.dedent(V2))
    results: list[dict] = []  # type: ignore[type-arg]

    async def caller(n: int) -> None:
        results.append(await legion.acall(pid, ("get", n)))

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(caller, n)
        assert await legion.acode_change(pid, 100, reload=True) == 2
        for n in range(20):
            nursery.start_soon(caller, n)
    for result in results:  # every call saw the old state or the new one, never a mix
        if result["vsn"] == 1:
            assert result["items"] == ["a", "b"]
        else:
            assert result == {"vsn": 2, "items": {"a": 0, "b": 1}, "count": 102}
    assert sum(r["vsn"] == 2 for r in results) >= 20
    assert (await legion.acall(pid, ("add", "c")))["items"] == {"a": 0, "b": 1, "c": 102}
    kill_and_wait(pid)


def test_G10_a_failed_code_change_keeps_the_old_code_and_state(module_dir: Path) -> None:
    pid, source = _start(module_dir)
    legion.call(pid, ("add", "a"))
    source.write_text(textwrap.dedent(BROKEN))
    with pytest.raises(legion.UpgradeError, match="cannot migrate"):
        legion.code_change(pid, 0, reload=True)
    assert legion.call(pid, ("add", "b")) == {"vsn": 1, "items": ["a", "b"]}
    source.write_text("this is not python(")
    with pytest.raises(legion.UpgradeError, match="SyntaxError"):
        legion.code_change(pid, 0, reload=True)
    assert legion.call(pid, ("get",)) == {"vsn": 1, "items": ["a", "b"]}
    kill_and_wait(pid)
