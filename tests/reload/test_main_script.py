"""Hot reload of the classes a script defines itself (`__main__`): `legion dev app.py` with
the agents, tools and servers in app.py."""

from __future__ import annotations

import ast
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

SCRIPT = '''
import sys
import legion
from legion import testing
from legion.testing import eval_and_complete

class Counter(legion.Server):
    vsn = VSN

    def init(self, arg):
        self.n = 0

    def handle_call(self, request, from_):
        self.n += 1
        return ["vVSN", self.n]

class Greeter(legion.Tool):
    """Greets people."""

    def hello(self, name: str) -> str:
        """Say hello."""
        return "WORD " + name

class Host(legion.Agent):
    """Hosts guests."""

    tools = [Greeter]

if __name__ == "__main__":
    pid = legion.start(Counter)
    print(legion.call(pid, "x"), flush=True)
    with testing.ScriptedModel([eval_and_complete("Greeter.hello('ann')")] * 2):
        host = legion.start_link(Host)
        print(repr(legion.call(host, "greet")), flush=True)
        sys.stdin.readline()  # the test saves a new version of this file meanwhile
        result = legion.reload("__main__")
        print(sorted(map(repr, result.reloaded)) == sorted(map(repr, [pid, host])), flush=True)
        print(result.failed, flush=True)
        print(legion.call(pid, "x"), flush=True)
        print(repr(legion.call(host, "greet")), flush=True)
        print(legion.call(legion.start(Counter), "x"), flush=True)
        legion.stop(host)
    legion.stop(pid)
'''


def version(vsn: int, word: str) -> str:
    return textwrap.dedent(SCRIPT).replace("VSN", str(vsn)).replace("WORD", word)


def test_classes_of_the_main_script_are_reloaded_in_live_processes_and_new_forks(
    tmp_path: Path,
) -> None:
    script = tmp_path / "app.py"
    script.write_text(version(1, "hi"))
    env = {k: v for k, v in os.environ.items() if k != "LEGION_NODE"}
    app = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdin, stdout, stderr = app.stdin, app.stdout, app.stderr
    assert stdin is not None and stdout is not None and stderr is not None
    printed: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for text in stdout:
            printed.put(text.strip())

    reader = threading.Thread(target=pump)
    reader.start()

    def line() -> str:
        return printed.get(timeout=60)  # a hung script fails the test instead of hanging it

    try:
        assert ast.literal_eval(line()) == ["v1", 1]
        assert ast.literal_eval(line()) == "hi ann"
        script.write_text(version(2, "hello") + "\n# saved again\n")
        stdin.write("go\n")
        stdin.flush()
        after = [line() for _ in range(5)]
        app.wait(60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        reader.join(10)
        stdin.close()
        stdout.close()
        err = stderr.read()
        stderr.close()
    assert after[0] == "True", (after, err)  # the server and the agent both switched
    assert after[1] == "{}"
    assert ast.literal_eval(after[2]) == ["v2", 2]  # new code, the state kept
    assert ast.literal_eval(after[3]) == "hello ann"  # the agent's tool runs the new code
    assert ast.literal_eval(after[4]) == ["v2", 1]  # a new process forks the saved script
    assert app.returncode == 0, err


def test_a_saved_script_maps_to_main() -> None:
    """What the watcher (`legion dev`) reloads when the script itself is saved."""
    from legion.reload import modules_of

    main_file = sys.modules["__main__"].__file__
    assert main_file is not None
    assert "__main__" in modules_of([main_file])


MP_SCRIPT = """
import multiprocessing  # first imported in the zygote by this script: aliases __mp_main__
import legion

class Echo(legion.Server):
    def handle_call(self, request, from_):
        return request

if __name__ == "__main__":
    for i in range(3):
        pid = legion.spawn(Echo)
        print(legion.call(pid, i, timeout=10), flush=True)
        legion.stop(pid)
"""


def test_a_script_importing_multiprocessing_keeps_its_classes_across_spawns(
    tmp_path: Path,
) -> None:
    """`import multiprocessing` sets `sys.modules["__mp_main__"]` to `__main__`, which in the
    zygote is the zygote itself: the next fork took that for a changed script and re-executed
    the zygote inside itself (every later spawn hung)."""
    script = tmp_path / "mp_app.py"
    script.write_text(MP_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "2"], out.stdout + out.stderr
