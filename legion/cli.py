"""The `legion` command: `legion run` runs an agent, `legion dev app.py` runs a script with hot
reload, `legion node` runs a node as a service, `legion sandbox` evaluates code in the
sandbox."""

from __future__ import annotations

import argparse
import os
import sys


def default_socket() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/legion-{os.getuid()}"
    return os.path.join(base, "legion", "node.sock")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="legion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    node = commands.add_parser(
        "node",
        help="run a node controller as a service; applications join with LEGION_NODE=<socket>",
    )
    node.add_argument("--socket", default=default_socket(), help="Unix socket path to listen on")
    node.add_argument("--metrics-port", help="serve Prometheus metrics on http://HOST:PORT/metrics")
    node.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default loopback)"
    )
    node.add_argument(
        "--max-frame-bytes",
        type=int,
        help="the largest frame (message, call, reply, spawn argument) the node accepts, in "
        "bytes (default: $LEGION_MAX_FRAME_BYTES, else 64 MiB)",
    )
    node.add_argument(
        "--max-mailbox-bytes",
        type=int,
        help="the bytes of messages one process may leave unread before it is killed with "
        "('mailbox_full', limit) (default: $LEGION_MAX_MAILBOX_BYTES, else 256 MiB)",
    )
    commands.add_parser("sandbox", help="evaluate Python code in the sandbox", add_help=False)
    commands.add_parser("run", help="run an agent on a task, showing each step", add_help=False)
    dev = commands.add_parser(
        "dev", help="run a script with hot reload: saved modules are swapped into live processes"
    )
    dev.add_argument("script", help="the application script (run as __main__)")
    dev.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    # `run` and `sandbox` parse their own arguments (`rest`); any other command takes none
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("run", "sandbox"):
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "node":
        from legion.supervisor import node as node_module

        node_args = ["--socket", args.socket]
        if args.metrics_port is not None:
            node_args += ["--metrics-port", args.metrics_port]  # checked by node.main
            node_args += ["--metrics-host", args.metrics_host]
        for flag, value in (
            ("--max-frame-bytes", args.max_frame_bytes),
            ("--max-mailbox-bytes", args.max_mailbox_bytes),
        ):
            if value is not None:
                node_args += [flag, str(value)]
        node_module.main(node_args, prog="legion node")
        return 0
    if args.command == "dev":
        import importlib
        import runpy

        import legion

        if not os.path.isfile(args.script):
            print(f"legion dev: no such script: {args.script}", file=sys.stderr)
            return 2
        # as `python app.py` does: the script's folder first on sys.path (its sibling modules
        # import), and its own name in argv
        folder = os.path.dirname(os.path.abspath(args.script))
        sys.path.insert(0, folder)
        sys.argv = [args.script, *args.args]
        # the watcher reports a module that fails to load, in one line; the zygote (started
        # later, it inherits this) then keeps quiet about the same failure at its next fork
        os.environ["LEGION_DEV"] = "1"
        legion.configure(reload=True)  # watches the current directory
        cwd = os.getcwd()
        if folder != cwd and not folder.startswith(cwd + os.sep):
            importlib.import_module("legion.reload").watch([cwd, folder])
        runpy.run_path(args.script, run_name="__main__")
        return 0
    if args.command == "run":
        from legion.run import main as run_main

        code: int = run_main(rest)
        return code
    if args.command == "sandbox":
        from legion.sandbox import cli as sandbox_cli  # type: ignore[attr-defined]

        result: int = sandbox_cli.main(rest)
        return result
    return 2


if __name__ == "__main__":
    sys.exit(main())
