"""``legion sandbox -c CODE`` / ``legion sandbox FILE``: run code in the sandbox, print the
outcome."""

from __future__ import annotations

import argparse
import json
import sys

from . import evaluate, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="legion sandbox", description="Run Python code in the Legion sandbox."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", dest="code", help="code to run")
    source.add_argument("file", nargs="?", help="file with the code ('-' for stdin)")
    source.add_argument("--info", action="store_true", help="show the active layers and exit")
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds")
    parser.add_argument("--max-memory", type=int, default=512, help="heap limit in MiB")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument(
        "--unsafe", action="store_true", help="run even if a kernel layer cannot be applied"
    )
    args = parser.parse_args(argv)
    if args.info:
        sandbox = info()
        print(f"python {sandbox.python}, zygote pid {sandbox.zygote_pid}")
        print(f"layers: {', '.join(sandbox.layers)}")
        if not sandbox.seccomp:
            print(f"seccomp unavailable: {sandbox.seccomp_error}")
        print(f"modules: {', '.join(sandbox.modules)}")
        return 0
    if args.code is not None:
        code = args.code
    elif args.file == "-":
        code = sys.stdin.read()
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                code = f.read()
        except OSError as exc:
            parser.error(f"cannot read {args.file}: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            parser.error(f"{args.file} is not UTF-8 text (byte {exc.start}); save it as UTF-8")
    try:
        ev = evaluate(
            code,
            timeout=args.timeout,
            max_memory=args.max_memory * 1024 * 1024,
            unsafe=args.unsafe,
        )
    except ValueError as exc:  # a limit out of range (--timeout nan, --max-memory 0)
        parser.error(str(exc))
    if args.json:
        out = {
            "ok": ev.ok,
            "value": ev.value_repr if ev.ok else None,
            "stdout": ev.stdout,
            "error": ev.error,
            "error_kind": ev.error_kind,
            "variables": ev.variables,
            "layers": list(ev.layers),
            "duration": round(ev.duration, 6),
        }
        print(json.dumps(out, ensure_ascii=False))
    else:
        sys.stdout.write(ev.stdout)
        if ev.ok:
            if ev.value is not None:
                print(ev.value_repr)
        else:
            shown = ev.traceback if ev.error_kind == "exception" else ""
            print(shown or ev.error, file=sys.stderr)
            print(f"[{ev.error_kind}]", file=sys.stderr)
    return 0 if ev.ok else 1
