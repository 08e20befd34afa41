"""The UX layer: an AST check, restricted builtins, a restricted ``__import__`` and an audit hook.

None of this is a security boundary (generator frames, ``str.format`` and ``string.Formatter``
reach around any such guard); the kernel layers in the child are. Its job is to turn honest
mistakes and obvious attempts into plain-words errors the LLM can act on, at the line it wrote:
``line 1: module 'os' is not available in the sandbox; available modules: ...``.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ALLOWED_MODULES: tuple[str, ...] = (
    "base64",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "operator",
    "queue",
    "random",
    "re",
    "stat",
    "statistics",
    "string",
    "textwrap",
    "time",
    "typing",
    "unicodedata",
)
"""Modules sandboxed code may import by default. All are preloaded in the zygote."""

OPTIONAL_MODULES: tuple[str, ...] = (
    "abc",
    "array",
    "binascii",
    "cmath",
    "colorsys",
    "contextlib",
    "csv",
    "difflib",
    "graphlib",
    "hashlib",
    "hmac",
    "html",
    "io",
    "ipaddress",
    "numbers",
    "pprint",
    "secrets",
    "struct",
    "uuid",
    "weakref",
    "zlib",
)
"""Standard-library modules the zygote also preloads, which an agent may add to its allowlist
(``sandbox_modules`` in its config, ``modules=`` of :func:`legion.sandbox.evaluate`). Nothing
else can be added: a module must be imported before the child is hardened (imports read files,
which the kernel layers refuse), and these are the ones known to import cleanly there."""

PRELOADED_MODULES: tuple[str, ...] = ALLOWED_MODULES + OPTIONAL_MODULES

HIDDEN_MODULES: tuple[str, ...] = (
    "_strptime",
    "locale",
    "stringprep",
    "encodings.idna",
    "encodings.punycode",
    "encodings.utf_16",
    "encodings.utf_16_le",
    "encodings.utf_16_be",
    "encodings.utf_32",
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.cp1252",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.hex_codec",
    "encodings.base64_codec",
    "encodings.rot_13",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "collections.abc",
    "pickle",
    "copyreg",
    "linecache",
    "reprlib",
    "traceback",
    "_pydatetime",
    "__future__",
    "html.entities",
    "html.parser",
)
"""Helpers that allowed modules import lazily (``datetime.strptime`` imports ``_strptime``,
``str.encode('idna')`` imports ``encodings.idna``). They are preloaded because imports are
impossible under seccomp, and the restricted ``__import__`` lets C code import them."""

FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
    }
)

FRAME_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
    }
)

SAFE_DUNDERS = frozenset(
    [
        "__init__",
        "__name__",
        "__qualname__",
        "__doc__",
        "__str__",
        "__repr__",
        "__len__",
        "__iter__",
        "__next__",
        "__eq__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__enter__",
        "__exit__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__post_init__",
        "__annotations__",
        "__module__",
        "__members__",
        "__wrapped__",
        "__call__",
        "__bool__",
        "__ne__",
        "__class__",
        "__new__",
        "__init_subclass__",
        "__set_name__",
        "__setattr__",
        "__delattr__",
        "__getattr__",
        "__dict__",
        "__cause__",
        "__context__",
        "__suppress_context__",
        "__traceback__",
        "__notes__",
        "__mro__",
        "__bases__",
        "__base__",
        "__slots__",
    ]
)
"""Dunder attributes ordinary class code uses (``super().__init__``, ``type(x).__name__``,
``P.__annotations__``, ``Color.__members__``, ``object.__setattr__(self, ...)`` in a frozen
dataclass, ``super().__setattr__`` in one's own ``__setattr__``, ``obj.__dict__``,
``e.__cause__``, ``B.__mro__``). ``x.__class__`` is ``type(x)``, an allowed builtin, so refusing
it would protect nothing. The walks that lead out stay refused: ``__subclasses__`` (from
``object``, which ``__mro__`` and ``__bases__`` reach), ``__globals__``, ``__builtins__``,
``__code__``, ``__closure__``, ``__getattribute__`` (a ``getattr``), the frame attributes of
tracebacks and generators (:data:`FRAME_ATTRIBUTES`), and ``__dict__`` of what comes from
elsewhere (a module's ``__dict__`` holds its private names and real builtins)."""

FOREIGN_DUNDERS = frozenset({"__dict__", "__getattr__"})
"""Allowed dunders refused on modules, tools and imported objects (as their ``_x`` are)."""

SAFE_DUNDER_NAMES = frozenset({"__name__", "__doc__", "__slots__", "__match_args__", "__all__"})
"""Dunder *names* ordinary code writes (``if __name__ == ...``, ``__slots__ = ...``)."""

SAFE_BUILTINS = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "print",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "zip",
    "hasattr",
    "aiter",
    "anext",
    "True",
    "False",
    "None",
    "Ellipsis",
    "NotImplemented",
]


class GuardError(Exception):
    """Raised by :func:`check` for code the guard refuses, with the offending line."""

    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno

    def __str__(self) -> str:
        return f"line {self.lineno}: {self.message}" if self.lineno else self.message


class SandboxViolation(PermissionError):
    """Raised at the call site by the audit hook, before the kernel would refuse the call."""


def module_unavailable(name: str, allowed: Iterable[str] = ALLOWED_MODULES) -> str:
    return (
        f"module '{name}' is not available in the sandbox; available modules: {', '.join(allowed)}"
    )


def allowlist(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The default allowlist plus ``extra`` modules, each of which must be in
    :data:`OPTIONAL_MODULES` (or already allowed); raises ``ValueError`` naming the module."""
    if isinstance(extra, str):
        raise ValueError(f"sandbox modules must be a list of module names, got {extra!r}")
    names = list(ALLOWED_MODULES)
    for name in extra:
        if not isinstance(name, str):
            raise ValueError(f"sandbox modules must be module names (str), got {name!r}")
        if name in names:
            continue
        if name not in OPTIONAL_MODULES:
            raise ValueError(
                f"module {name!r} cannot be added to the sandbox: the zygote preloads only "
                f"modules known to import safely before hardening; ones you may add: "
                f"{', '.join(OPTIONAL_MODULES)}"
            )
        names.append(name)
    return tuple(names)


def _module_allowed(name: str, allowed: Iterable[str]) -> bool:
    return name.split(".", 1)[0] in allowed


def _check_name(name: str, node: ast.AST) -> None:
    line = getattr(node, "lineno", None)
    if name in FORBIDDEN_NAMES:
        raise GuardError(f"{name} is not permitted in the sandbox", line)
    if name.startswith("__") and name.endswith("__") and name not in SAFE_DUNDER_NAMES:
        raise GuardError(f"dunder names are not allowed in the sandbox: {name}", line)


def _check_imported_name(name: str, node: ast.AST) -> None:
    _check_name(name, node)
    if name.startswith("_"):
        raise GuardError(
            f"private names of other modules are not available in the sandbox: {name}",
            getattr(node, "lineno", None),
        )


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _star_names(module: str | None) -> list[str]:
    """The names ``from module import *`` binds (the module's ``__all__`` or its public names);
    none for a module not loaded here (its import fails at run time)."""
    loaded = sys.modules.get(module or "")
    if loaded is None:
        return []
    public = getattr(loaded, "__all__", None)
    if public is None:
        return [n for n in vars(loaded) if not n.startswith("_")]
    return [n for n in public if isinstance(n, str)]


def _imported_names(nodes: list[ast.AST]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".", 1)[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                names.update(_star_names(node.module) if a.name == "*" else [a.asname or a.name])
    return names


_IMPORT_ERROR_CATCHERS = frozenset(
    {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    if kinds is None:  # a bare except
        return True
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERROR_CATCHERS for n in names)


def _fallback_imports(nodes: list[ast.AST]) -> set[int]:
    """The ``id`` of every import run directly in the body of a ``try`` whose handlers catch
    ImportError (``try: import orjson as json / except ImportError: import json``): those
    raise ModuleNotFoundError at run time, so the fallback runs, as in CPython."""
    found: set[int] = set()
    for node in nodes:
        if not isinstance(node, (ast.Try, ast.TryStar)):
            continue
        if not any(_catches_import_error(h) for h in node.handlers):
            continue
        todo: list[ast.AST] = list(node.body)
        while todo:
            item = todo.pop()
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs later, outside this try
            if isinstance(item, (ast.Import, ast.ImportFrom)):
                found.add(id(item))
            todo.extend(ast.iter_child_nodes(item))
    return found


def _refuse_import(name: str, allowed: tuple[str, ...], node: ast.stmt, fallback: set[int]) -> None:
    """Refuse an import of a module outside ``allowed`` now, unless a ``try`` around it
    catches the ModuleNotFoundError the import raises at run time (a hidden helper module,
    which the sandbox's ``__import__`` would let through, is refused either way)."""
    if _module_allowed(name, allowed):
        return
    if id(node) in fallback and not _module_allowed(name, HIDDEN_MODULES):
        return
    raise GuardError(module_unavailable(name, allowed), getattr(node, "lineno", None))


def check(
    tree: ast.AST,
    allowed: Iterable[str] = ALLOWED_MODULES,
    outside: Iterable[str] = (),
) -> None:
    """Refuse imports outside ``allowed``, forbidden builtins, dunder names and attributes
    (but for a few ordinary ones), private attributes of what comes from elsewhere (``outside``:
    names bound to modules, tools and imported objects; the code's own imports are added), and
    frame/code/traceback introspection. The code's own ``_names`` and ``self._attr`` pass.
    Raises :class:`GuardError`."""
    allowed = tuple(allowed)
    nodes = list(ast.walk(tree))  # walked once; every pass below reads this list
    fallback = _fallback_imports(nodes)
    foreign = set(outside) | _imported_names(nodes)
    for node in nodes:  # aliases: `r = random`, `R = random.Random`
        if isinstance(node, ast.Assign) and _root_name(node.value) in foreign:
            foreign.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in nodes:
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Name):
            _check_name(node.id, node)
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("__") and attr.endswith("__"):
                if attr not in SAFE_DUNDERS:
                    raise GuardError(
                        f"dunder attributes are not allowed in the sandbox: .{attr} (only "
                        f"the ordinary ones are: __init__, __dict__, __setattr__, __mro__, "
                        f"__cause__, ...; see docs/sandbox.md)",
                        line,
                    )
                if attr in FOREIGN_DUNDERS and _root_name(node.value) in foreign:
                    raise GuardError(
                        f"private attributes of modules and tools are not available in the "
                        f"sandbox: {_root_name(node.value)}...{attr}",
                        line,
                    )
            elif attr.startswith("_") and _root_name(node.value) in foreign:
                raise GuardError(
                    f"private attributes of modules and tools are not available in the "
                    f"sandbox: {_root_name(node.value)}...{attr}",
                    line,
                )
            if attr in FRAME_ATTRIBUTES:
                raise GuardError(
                    f"frame, code and traceback introspection is not allowed in the sandbox:"
                    f" .{attr}",
                    line,
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                _refuse_import(alias.name, allowed, node, fallback)
                if alias.asname:
                    _check_name(alias.asname, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                raise GuardError("relative imports are not available in the sandbox", line)
            if node.module == "__future__":
                continue
            _refuse_import(node.module, allowed, node, fallback)
            for alias in node.names:
                if alias.name == "*":  # binds public names; a use of a forbidden one
                    continue  # (codecs' `open`) is refused where the code names it
                _check_imported_name(alias.name, node)
                if alias.asname:
                    _check_name(alias.asname, node)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                _check_name(name, node)


def restricted_import(
    hidden: frozenset[str],
    allowed: Iterable[str] = ALLOWED_MODULES,
) -> Callable[..., Any]:
    """An ``__import__`` for the sandbox's builtins.

    Sandboxed code can only name allowlisted modules (the AST check sees to that); C code in an
    allowed module calls ``__import__`` through the *caller's* builtins for its lazy helpers
    (``_strptime``), so those preloaded helpers pass too."""
    real_import = builtins.__import__
    modules = sys.modules
    allowed = tuple(allowed)

    def sandbox_import(
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and (_module_allowed(name, allowed) or name in hidden) and name in modules:
            return real_import(name, globals, locals, fromlist, level)
        if level == 0 and _module_allowed(name, allowed):
            raise ModuleNotFoundError(
                f"module '{name}' is not preloaded in the sandbox and cannot be imported there",
                name=name,
            )
        raise ModuleNotFoundError(module_unavailable(name, allowed), name=name)

    return sandbox_import


def safe_builtins(
    print_fn: Callable[..., None],
    hidden: frozenset[str],
    allowed: Iterable[str] = ALLOWED_MODULES,
) -> dict[str, Any]:
    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[name] = value
    table["print"] = print_fn
    table["__build_class__"] = builtins.__build_class__
    table["__import__"] = restricted_import(hidden, allowed)
    table["__name__"] = "builtins"
    return table


_BLOCKED_EVENTS = (
    "open",
    "os.",
    "subprocess.",
    "socket.",
    "ctypes.",
    "_thread.start_new_thread",
    "mmap.",
    "fcntl.",
    "resource.",
    "shutil.",
    "pty.",
    "sqlite3.",
    "syslog.",
    "urllib.",
    "webbrowser.",
    "glob.",
    "tempfile.",
    "signal.",
    "sys.addaudithook",
    "sys.settrace",
    "sys.setprofile",
    "sys._current_frames",
    "cpython.run_",
    "cpython.remote_debugger",
)


def install_audit_hook() -> None:
    """Turn the first step of an escape into "X is not permitted in the sandbox", at its line."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_BLOCKED_EVENTS) and event != "os.exit":
            raise SandboxViolation(f"{event} is not permitted in the sandbox")

    sys.addaudithook(hook)
