"""The README's Python snippets are complete programs that pass `mypy --strict`: the typed API
(`start_link` gives a `Pid` a later `call` accepts, `spawn(..., monitor=True)` a pair, ...)
works for a user who type-checks, and a class that cannot run as a process is refused by the
type checker as well as at run time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def mypy_strict(tmp_path: Path, sources: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(ROOT / ".mypy_cache"), *sorted(sources)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip


def test_every_readme_python_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    found = snippets()
    assert len(found) >= 5  # agents, runtime, pool, sandbox, telemetry
    checked = mypy_strict(tmp_path, {f"readme_{i}.py": s for i, s in enumerate(found)})
    assert checked.returncode == 0, checked.stdout + checked.stderr


PID, REF = "legion.supervisor.terms.Pid", "legion.supervisor.terms.Ref"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("reveal_type(legion.start_link(Counter, 1))", f'Revealed type is "{PID}"'),
        ("reveal_type(legion.start(Maybe, 1))", f'Revealed type is "{PID} | None"'),
        ("reveal_type(legion.spawn(work, 1, monitor=True))", f'"tuple[{PID}, {REF}]"'),
        ("reveal_type(legion.start_link(legion.Supervisor))", f'Revealed type is "{PID}"'),
        ("legion.start_link(Plain)", 'incompatible type "type[Plain]"'),
    ],
)
def test_the_start_functions_are_typed(tmp_path: Path, call: str, expected: str) -> None:
    source = f"""import legion

class Counter(legion.Server):
    def init(self, start: int) -> None:
        self.count = start

class Maybe(legion.Server):
    def init(self, start: int) -> legion.Ignore | None:
        return legion.Ignore() if start < 0 else None

class Plain:
    pass

def work(n: int) -> None:
    pass

{call}
"""
    checked = mypy_strict(tmp_path, {"typed.py": source})
    assert expected in checked.stdout, checked.stdout + checked.stderr
