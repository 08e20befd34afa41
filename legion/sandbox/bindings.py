"""Bindings across evaluations, encoded and decoded only inside sandboxed children.

The blob is a pickle of the modules bound to names and one *entry per variable*, so a value that
cannot be kept never takes the others with it:

* a value that pickling would store as a reference to its own name in the sandbox (a class, a
  top-level function, an ``@lru_cache`` function, a namedtuple, an Enum, a ``TypeVar``...) is
  kept as the source of the top-level statements that bound it, re-run on restore;
* anything else is pickled on its own, functions defined by the code (lambdas, closures, nested
  functions) *by value*: their code object (``marshal``), defaults and closure cells;
* a bound method is kept as its object and the method's name;
* what cannot be kept is dropped with the reason, for the model to read, and so is a value
  whose pickle refers to a class or function that is not kept, or to a global the restore
  would refuse: what is listed as kept comes back.

On restore, modules are rebound first, then the entries are applied in rounds until none makes
progress, so an instance finds its class and a class finds the namedtuple it derives from,
whatever order they were bound in; an entry that still fails is dropped with its error. The
parent stores the blob and never opens it.
"""

from __future__ import annotations

import ast
import functools
import io
import marshal
import pickle
import reprlib
import sys
import types
from dataclasses import dataclass
from typing import Any

from .guard import PRELOADED_MODULES, SAFE_BUILTINS

MODULE = "__sandbox__"
MAX_BLOB = 8 * 1024 * 1024
"""Largest bindings blob; past it the largest variables are dropped first."""
VERSION = 2
EARLIER = "<earlier step>"
"""Filename of code objects restored by value (their step's source is gone)."""
_SAFE_BUILTINS = frozenset(SAFE_BUILTINS)
_PICKLE_MODULES = frozenset({MODULE, "builtins", "copyreg", "_codecs", "types", "_operator"})
_RECONSTRUCTORS = frozenset(
    {"_make_function", "_set_function_state", "_module", "_bound_method", "_bound_attr"}
)
_BY_REDUCE = (type(None), type(NotImplemented), type(...))  # pickled as type(None), not by name
_ATOMIC = frozenset({type(None), bool, int, float, str, bytes})
"""Exact types whose pickle refers to no global, pickled without :class:`_Pickler`."""
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6

Dropped = dict[str, str]
"""Variable name -> why it could not be kept."""


@dataclass(frozen=True, slots=True)
class Statement:
    """A top-level statement that bound a name: its source and the compiler flags (``from
    __future__`` imports) of the code it came from."""

    source: str
    flags: int
    calls_tool: bool


class Definitions:
    """How to re-create the values that name themselves: by name, the top-level statements that
    made the current value, and that value (a statement is only re-run while the variable still
    holds what it made: a later ``if``, ``for`` or ``global`` rebinding makes it stale)."""

    def __init__(self) -> None:
        self.statements: dict[str, list[Statement]] = {}
        self.made: dict[str, Any] = {}

    def record(
        self, code: str, tree: ast.Module, flags: int, tools: frozenset[str], ns: dict[str, Any]
    ) -> None:
        """After a successful step: note its top-level ``def``/``class``/assignment statements
        by the names they bind, in order. One that mentions its own name on the right
        (``f = lru_cache(f)``) extends the name's history; any other replaces it; any other
        kind of statement binding the name (``for``, ``with``, an ``if`` around a ``def``)
        forgets it."""
        lines = code.splitlines(keepends=True)
        touched: set[str] = set()
        for node in tree.body:
            names = _bound_names(node)
            if not names:
                if not self.statements:  # nothing recorded (this step included): none to forget
                    continue
                for name in _stored_names(node):
                    self.forget(name)
                    touched.discard(name)
                continue
            decorators = getattr(node, "decorator_list", [])
            start = min([d.lineno for d in decorators] + [node.lineno]) - 1
            calls_tool = bool(tools) and any(  # no tools (the usual case): nothing to walk
                isinstance(n, ast.Name) and n.id in tools for n in ast.walk(node)
            )
            stmt = Statement("".join(lines[start : node.end_lineno]), flags, calls_tool)
            for name in names:
                history = self.statements.get(name)  # extended only if the value names it
                refers = (
                    bool(history)
                    and isinstance(node, (ast.Assign, ast.AnnAssign))
                    and name in _rhs_names(node)
                )
                self.statements[name] = [*history, stmt] if history and refers else [stmt]
                touched.add(name)
        for name in touched:
            self.made[name] = ns.get(name)

    def current(self, name: str, value: Any) -> list[Statement] | None:
        """The statements that made ``value``, or None if it was made some other way."""
        stmts = self.statements.get(name)
        return stmts if stmts and self.made.get(name) is value else None

    def forget(self, name: str) -> None:
        self.statements.pop(name, None)
        self.made.pop(name, None)


def _stored_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module (not inside functions, classes,
    lambdas or comprehensions)."""
    found: set[str] = set()
    todo: list[ast.AST] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(item.name)
            continue
        if isinstance(
            item, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
        ):
            continue
        if isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)):
            found.add(item.id)
        elif isinstance(item, (ast.Import, ast.ImportFrom)):
            found.update((a.asname or a.name).split(".", 1)[0] for a in item.names)
        elif isinstance(item, (ast.MatchAs, ast.MatchStar)) and item.name:
            found.add(item.name)
        todo.extend(ast.iter_child_nodes(item))
    return found


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return [node.target.id] if isinstance(node.target, ast.Name) else []
    return []


def _rhs_names(node: ast.Assign | ast.AnnAssign) -> set[str]:
    value = node.value
    return {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} if value else set()


def user_names(ns: dict[str, Any], reserved: frozenset[str]) -> list[str]:
    return [n for n in ns if not (n.startswith("__") and n.endswith("__")) and n not in reserved]


def describe(ns: dict[str, Any], reserved: frozenset[str], skip: Dropped) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in user_names(ns, reserved):
        if name in skip:
            continue
        try:
            out[name] = _repr.repr(ns[name])
        except Exception:
            out[name] = "<unrepresentable>"
    return out


# --- encoding ----------------------------------------------------------------------------------


def snapshot(
    ns: dict[str, Any], defs: Definitions, reserved: frozenset[str]
) -> tuple[bytes, Dropped]:
    """Encode the namespace; returns the blob and the variables dropped, with the reason."""
    modules: dict[str, str] = {}
    entries: list[tuple[str, str, Any]] = []
    sizes: dict[str, int] = {}
    dropped: Dropped = {}
    needs: dict[str, set[str]] = {}  # entry -> the sandbox names its restore needs
    sources: dict[str, list[Statement]] = {}  # the entries kept as source
    names = user_names(ns, reserved)
    by_source = {n for n in names if _names_itself(n, ns[n]) and _recreatable(defs, n, ns[n])}
    for name in names:
        value = ns[name]
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
        elif _names_itself(name, value):
            stmts = defs.current(name, value)
            if not stmts:
                dropped[name] = (
                    f"{_kind(value)} defined where the next step cannot re-create it "
                    "(define it with a top-level def, class or assignment)"
                )
            elif any(s.calls_tool for s in stmts):
                dropped[name] = "re-creating it would call a tool again"
            else:
                entries.append((name, "source", [(s.source, s.flags) for s in stmts]))
                sizes[name] = sum(len(s.source) for s in stmts)
                sources[name] = stmts
                needs[name] = set()  # what its statements read: only looked up if needed below
        elif type(value) in _ATOMIC:  # refers to no global: the checks below have nothing to do
            data = pickle.dumps(value, protocol=5)
            entries.append((name, "value", data))
            sizes[name] = len(data)
            needs[name] = set()
        else:
            pickler = _Pickler(io.BytesIO(), ns, by_source)
            try:
                pickler.dump(value)
            except RecursionError:
                dropped[name] = f"{_kind(value)} nested too deeply to save"
                continue
            except Exception as exc:
                dropped[name] = f"{_kind(value)} cannot be saved ({_reason(exc)})"
                continue
            refused = [r for r in map(_refusal, sorted(pickler.foreign)) if r]
            if refused:  # the next step's unpickler would refuse it: say so now, not then
                dropped[name] = f"{_kind(value)} cannot be saved ({refused[0]})"
                continue
            data = pickler.file.getvalue()
            entries.append((name, "value", data))
            sizes[name] = len(data)
            needs[name] = pickler.own
    total = sum(sizes.values())
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        if total <= MAX_BLOB:
            break
        total -= sizes.pop(name)
        dropped[name] = f"too large to keep (the variables are capped at {MAX_BLOB >> 20} MiB)"
    saved = {e[0] for e in entries} | modules.keys()
    if dropped or any(own - saved for own in needs.values()):
        # something is not kept: find what the definitions read, to drop those that need it
        # (with nothing missing, parsing every definition's source at each step is wasted)
        for name, stmts in sources.items():
            eager = set().union(*(_eager_names(s.source) for s in stmts))
            needs[name] = {n for n in eager if n != name and n in ns and n in names}
    _drop_dependents(needs, saved, dropped, ns)
    kept = [e for e in entries if e[0] not in dropped]
    blob = pickle.dumps({"version": VERSION, "modules": modules, "entries": kept}, protocol=5)
    return blob, dropped


def _recreatable(defs: Definitions, name: str, value: Any) -> bool:
    stmts = defs.current(name, value)
    return bool(stmts) and not any(s.calls_tool for s in stmts or ())


@functools.lru_cache(maxsize=256)
def _eager_names(source: str) -> frozenset[str]:
    """The names a definition's statements read when they run (a class's bases and body, a
    decorator, a default, an assignment's value), not those read later by a function's body.
    Cached by source: a session saves the same definitions at every step."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            todo.extend([*args.defaults, *(d for d in args.kw_defaults if d is not None)])
            if not isinstance(node, ast.Lambda):
                todo.extend(node.decorator_list)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            found.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return frozenset(found)


def _drop_dependents(
    needs: dict[str, set[str]], entries: set[str], dropped: Dropped, ns: dict[str, Any]
) -> None:
    """Drop every entry that needs a sandbox name that will not be restored (an instance of a
    class re-created only by calling a tool, a class deriving from one defined in an ``if``),
    until none is left: what is listed as kept must come back at the next step."""
    kept = entries - dropped.keys()
    cascaded: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, own in needs.items():
            missing = sorted(own - kept)
            if name in kept and missing:
                first = missing[0]
                why = f"see {first}" if first in cascaded else dropped.get(first, "not saved")
                dropped[name] = f"{_kind(ns[name])} that needs {first}, which is not kept ({why})"
                kept.discard(name)
                cascaded.add(name)
                changed = True


def _names_itself(name: str, value: Any) -> bool:
    """True if pickle would store ``value`` as a reference to the sandbox's ``name``."""
    if getattr(value, "__module__", None) != MODULE:
        return False
    if isinstance(value, types.FunctionType):
        return value.__qualname__ == name
    return (
        isinstance(value, type)
        or getattr(value, "__qualname__", None) == name
        or (getattr(value, "__name__", None) == name and not isinstance(value, types.MethodType))
    )


def _kind(value: Any) -> str:
    if isinstance(value, type):
        return f"class {value.__name__}"
    return f"a {type(value).__name__}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


class _Pickler(pickle.Pickler):
    """Pickles functions defined by the sandboxed code by value when the next step will not
    have them by name (lambdas, closures, nested functions, a ``def`` in a loop) and bound
    methods as (function, instance); everything else as pickle does. Notes the globals the
    pickle refers to: ``own`` (heads of sandbox names), ``foreign`` (``(module, name)``)."""

    def __init__(self, file: io.BytesIO, ns: dict[str, Any], by_source: set[str]) -> None:
        super().__init__(file, protocol=5)
        self.file = file
        self.ns = ns
        self.by_source = by_source
        self.own: set[str] = set()
        self.foreign: set[tuple[str, str]] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):  # in a closure or a container: by name
            return (_module, (obj.__name__,))
        if isinstance(obj, types.MethodType):  # `f = obj.method`: rebound on restore
            return (_bound_method, (obj.__func__, obj.__self__))
        if (
            isinstance(obj, types.BuiltinMethodType)
            and not isinstance(obj.__self__, types.ModuleType | None)
            and not obj.__name__.startswith("_")
        ):  # `add = items.append`: rebound on restore (pickle would use getattr)
            return (_bound_attr, (obj.__self__, obj.__name__))
        if type(obj) is types.FunctionType and obj.__globals__ is self.ns:
            head = obj.__qualname__.split(".", 1)[0]
            if head in self.by_source and _lookup(self.ns, obj.__qualname__) is obj:
                self.own.add(head)
                return NotImplemented  # a top-level function, a method: by reference
            return self._by_value(obj)
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            self._note_global(obj)
        return NotImplemented

    def _note_global(self, obj: Any) -> None:
        if obj in _BY_REDUCE:
            return
        if isinstance(obj, types.BuiltinFunctionType) and not (
            obj.__self__ is None or isinstance(obj.__self__, types.ModuleType)
        ):
            return  # a bound builtin method: pickled through its reduce (getattr), noted then
        qualname = getattr(obj, "__qualname__", None)
        module = getattr(obj, "__module__", None)
        if not isinstance(qualname, str) or not isinstance(module, str):
            return  # pickle searches sys.modules for it; the restore's unpickler still checks
        if module == MODULE:
            self.own.add(qualname.split(".", 1)[0])
        else:
            self.foreign.add((module, qualname))

    def _by_value(self, obj: types.FunctionType) -> Any:
        cells = obj.__closure__ or ()
        code = _relocate(obj.__code__)
        state = (
            obj.__defaults__,
            obj.__kwdefaults__,
            [(True, c.cell_contents) if _filled(c) else (False, None) for c in cells],
            dict(obj.__dict__),
            obj.__doc__,
        )
        args = (marshal.dumps(code), obj.__name__, obj.__qualname__, len(cells))
        return (_make_function, args, state, None, None, _set_function_state)


def _lookup(ns: dict[str, Any], qualname: str) -> Any:
    head, *rest = qualname.split(".")
    obj = ns.get(head)
    for part in rest:
        obj = getattr(obj, part, None)
    return obj


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _relocate(code: types.CodeType) -> types.CodeType:
    """The code object with every filename set to ``<earlier step>`` (nested ones included), so
    a traceback does not show lines of the current step's source for it."""
    consts = tuple(_relocate(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=EARLIER, co_consts=consts)


def _module(name: str) -> types.ModuleType:
    if name.split(".", 1)[0] not in PRELOADED_MODULES or name not in sys.modules:
        raise pickle.UnpicklingError(f"module {name} is not available in the sandbox")
    return sys.modules[name]


def _bound_method(func: Any, self: Any) -> types.MethodType:
    return types.MethodType(func, self)


def _bound_attr(obj: Any, name: str) -> Any:
    if name.startswith("_"):  # only the public methods a saved value was bound to
        raise pickle.UnpicklingError(f"attribute {name} is not allowed in bindings")
    return getattr(obj, name)


def _make_function(code: bytes, name: str, qualname: str, ncells: int) -> types.FunctionType:
    ns = sys.modules[MODULE].__dict__
    closure = tuple(types.CellType() for _ in range(ncells)) or None
    fn = types.FunctionType(marshal.loads(code), ns, name, None, closure)
    fn.__qualname__ = qualname
    return fn


def _set_function_state(fn: types.FunctionType, state: tuple[Any, ...]) -> None:
    defaults, kwdefaults, cells, attrs, doc = state
    fn.__defaults__ = defaults
    fn.__kwdefaults__ = kwdefaults
    for cell, (filled, value) in zip(fn.__closure__ or (), cells, strict=True):
        if filled:
            cell.cell_contents = value
    fn.__dict__.update(attrs)
    fn.__doc__ = doc


# --- decoding ----------------------------------------------------------------------------------


class _Unpickler(pickle.Unpickler):
    """Resolves only preloaded modules, safe builtins and our own function reconstructors: the
    blob is decoded inside the sandbox anyway; this keeps a forged one from reaching further."""

    def find_class(self, module: str, name: str) -> Any:
        refused = _refusal((module, name))
        if refused:
            raise pickle.UnpicklingError(refused)
        return super().find_class(module, name)


def _refusal(ref: tuple[str, str]) -> str:
    """Why the unpickler refuses the global ``module.name``, or ""."""
    module, name = ref
    root = module.split(".", 1)[0]
    if module == __name__:
        return "" if name in _RECONSTRUCTORS else f"{module}.{name} is not allowed in bindings"
    if module == "builtins" and name not in _SAFE_BUILTINS and not _is_exception(name):
        return f"builtins.{name} is not allowed in bindings"
    if module in _PICKLE_MODULES or root in PRELOADED_MODULES:
        return ""
    return f"{module}.{name} is not allowed in bindings"


def _is_exception(name: str) -> bool:
    import builtins

    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


def restore(blob: bytes, ns: dict[str, Any], defs: Definitions) -> Dropped:
    """Rebind modules, then apply the entries (re-run statements, unpickle values) in rounds
    until no entry makes progress. Returns the variables that could not be restored, with the
    error; the others are in ``ns`` (inside the sandbox). Raises only if the blob itself cannot
    be read."""
    data = _loads(blob)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("the bindings were written by another version of the sandbox")
    for name, modname in data["modules"].items():
        if modname in sys.modules and modname.split(".", 1)[0] in PRELOADED_MODULES:
            ns[name] = sys.modules[modname]
    pending: list[tuple[str, str, Any]] = list(data["entries"])
    errors: Dropped = {}
    while pending:
        failed = []
        for entry in pending:
            try:
                _apply(entry, ns, defs)
            except RecursionError:
                errors[entry[0]] = "nested too deeply to restore"
                failed.append(entry)
            except Exception as exc:
                errors[entry[0]] = f"{type(exc).__name__}: {_reason(exc)}"
                failed.append(entry)
            else:
                errors.pop(entry[0], None)
        if len(failed) == len(pending):
            break
        pending = failed
    dropped: Dropped = {}
    for name, *_rest in pending:
        ns.pop(name, None)
        defs.forget(name)
        dropped[name] = f"could not be restored ({errors[name]})"
    return dropped


def _apply(entry: tuple[str, str, Any], ns: dict[str, Any], defs: Definitions) -> None:
    name, kind, data = entry
    if kind == "value":
        ns[name] = _loads(data)
        return
    stmts = []
    for source, flags in data:
        filename = f"<definition of {name}>"
        _register_source(filename, source)
        exec(compile(source, filename, "exec", flags=flags, dont_inherit=True), ns)
        stmts.append(Statement(source, flags, False))
    defs.statements[name] = stmts
    defs.made[name] = ns.get(name)


def _register_source(filename: str, source: str) -> None:
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
