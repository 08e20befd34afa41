"""Bindings across evaluations, encoded and decoded only inside sandboxed children.

The blob is a pickle of: the source of the top-level ``def``/``class`` statements seen so far
(replayed first, so functions and classes survive and pickles of their instances resolve), the
modules bound to names, and the picklable values. Values that cannot be pickled (lambdas,
generators, ...) are reported as dropped. The parent stores the blob and never opens it.
"""

from __future__ import annotations

import ast
import io
import pickle
import reprlib
import sys
import types
from typing import Any

from .guard import ALLOWED_MODULES, SAFE_BUILTINS

MODULE = "__sandbox__"
MAX_BLOB = 8 * 1024 * 1024
_SAFE_BUILTINS = frozenset(SAFE_BUILTINS)
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def definitions(code: str, tree: ast.Module) -> dict[str, str]:
    """Source of the top-level def/class statements (decorators included), by name."""
    lines = code.splitlines(keepends=True)
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
            found[node.name] = "".join(lines[start : node.end_lineno])
    return found


def user_names(ns: dict[str, Any], reserved: frozenset[str]) -> list[str]:
    return [n for n in ns if not (n.startswith("__") and n.endswith("__")) and n not in reserved]


def describe(ns: dict[str, Any], reserved: frozenset[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in user_names(ns, reserved):
        try:
            out[name] = _repr.repr(ns[name])
        except Exception:
            out[name] = "<unrepresentable>"
    return out


def snapshot(
    ns: dict[str, Any], defs: dict[str, str], reserved: frozenset[str]
) -> tuple[bytes, list[str]]:
    """Encode the namespace; returns the blob and the names that were dropped."""
    modules: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in user_names(ns, reserved):
        value = ns[name]
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        else:
            values[name] = value
    dropped: list[str] = []
    try:
        payload = pickle.dumps(values, protocol=5)
    except Exception:
        payload = b""
    if not payload or len(payload) > MAX_BLOB:
        sized: dict[str, bytes] = {}
        for name, value in values.items():
            try:
                sized[name] = pickle.dumps(value, protocol=5)
            except Exception:
                dropped.append(name)
        total = sum(map(len, sized.values()))
        for name in sorted(sized, key=lambda n: -len(sized[n])):
            if total <= MAX_BLOB:
                break
            total -= len(sized.pop(name))
            dropped.append(name)
        parts = {name: values[name] for name in sized}
        payload = pickle.dumps(parts, protocol=5)
    blob = pickle.dumps({"defs": defs, "modules": modules, "values": payload}, protocol=5)
    return blob, dropped


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".", 1)[0]
        if module == "builtins" and name not in _SAFE_BUILTINS and not _is_exception(name):
            raise pickle.UnpicklingError(f"builtins.{name} is not allowed in bindings")
        if module in (MODULE, "builtins", "copyreg", "_codecs") or root in ALLOWED_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in bindings")


def _is_exception(name: str) -> bool:
    import builtins

    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def restore(blob: bytes, ns: dict[str, Any], defs: dict[str, str]) -> None:
    """Replay definitions, rebind modules, unpickle values into ``ns`` (inside the sandbox)."""
    data = _Unpickler(io.BytesIO(blob)).load()
    for name, source in data["defs"].items():
        filename = f"<definition of {name}>"
        exec(compile(source, filename, "exec"), ns)
        defs[name] = source
        _register_source(filename, source)
    for name, modname in data["modules"].items():
        if modname in sys.modules and modname.split(".", 1)[0] in ALLOWED_MODULES:
            ns[name] = sys.modules[modname]
    ns.update(_Unpickler(io.BytesIO(data["values"])).load())


def _register_source(filename: str, source: str) -> None:
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
