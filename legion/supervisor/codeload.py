"""Loading new code into a running process (Erlang's code server, for one Python process).

`load(names)` re-executes the named modules from their source, then patches the classes and
functions they define *in place*: the old class object receives the new methods, docstrings
and attributes, and the old function object the new code, and the module's names are bound
back to those old objects. So everything that already holds them sees the new code at its next
call, whatever way it got them:

* `import helpers; helpers.f()` (a fully qualified call, as in Erlang) and `from helpers import
  f; f()` (the same function object, now running the new code);
* `from my_tools import MyTool` in another module, `tools = [MyTool]` lists, live instances
  (their class is the same object) and `isinstance` checks.

A class whose layout cannot change in place (other bases, `__slots__`, a metaclass other than
`type` or `ABCMeta`: an `Enum`, a msgspec `Struct`...) and a function whose closure changed
shape are replaced instead: the module holds the new object, and every application module's
global bound to the old one is rebound to it (`current(obj)` finds an object's newest version).

A module runs its top level again, so module-level state (a cache, a counter) starts afresh,
as with `importlib.reload`. `load` is all or nothing: if a module fails to compile or to run,
every change it made is undone and `LoadError` is raised; `Loaded.undo()` takes back a load
that succeeded (a server whose `code_change` then fails).
"""

from __future__ import annotations

import abc
import functools
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "LoadError",
    "Loaded",
    "current",
    "dependents",
    "is_application",
    "load",
    "not_application",
]


class LoadError(Exception):
    """A module could not be compiled or re-executed; nothing changed."""

    def __init__(self, module: str, detail: str) -> None:
        super().__init__(f"{module}: {detail}")
        self.module = module
        self.detail = detail


class Loaded:
    """What a `load` did: the modules re-executed, and how to take it all back."""

    def __init__(self, modules: list[str], undo_log: list[Callable[[], None]]) -> None:
        self.modules = modules
        self._undo_log = undo_log

    def undo(self) -> None:
        """Put back every module, class and function as it was before the load."""
        while self._undo_log:
            self._undo_log.pop()()


def load(names: Iterable[str]) -> Loaded:
    """Re-execute those of `names` that this process has imported, and patch in place.

    Names not imported here are skipped (`Loaded.modules` lists the ones loaded). Every source
    is compiled before anything runs; a failure undoes the whole load and raises `LoadError`.
    `__main__` means the application's script, which processes hold as `__mp_main__` (run
    again as that, its `if __name__ == "__main__":` block does not run); the module running as
    `__main__` itself (the application's script, the zygote) is never re-executed.
    """
    found: list[tuple[types.ModuleType, types.CodeType]] = []
    for name in dict.fromkeys("__mp_main__" if n == "__main__" else n for n in names):
        module = sys.modules.get(name)
        if module is None:
            continue
        found.append((module, _compile(name, module)))
    undo: list[Callable[[], None]] = []
    pairs: list[tuple[Any, Any]] = []
    running = "?"
    try:
        for module, code in found:
            running = module.__name__
            pairs += _execute(module, code, undo)
        running = ", ".join(m.__name__ for m, _ in found)
        _patch_all(pairs, undo)
    except BaseException as exc:
        Loaded([], undo).undo()
        raise LoadError(running, f"{type(exc).__name__}: {exc}") from exc
    return Loaded([m.__name__ for m, _ in found], undo)


def _compile(name: str, module: types.ModuleType) -> types.CodeType:
    """The module's code compiled from its source text, never from cached bytecode: a rewrite
    within the same second and of the same size can leave a stale .pyc that
    `importlib.reload` would trust."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        raise LoadError(name, "no Python source file")
    try:
        with open(path, encoding="utf-8") as f:
            return compile(f.read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise LoadError(name, f"SyntaxError: {exc.msg} ({path}, line {exc.lineno})") from exc
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, a NUL byte
        raise LoadError(name, f"{type(exc).__name__}: {exc}") from exc


def _execute(
    module: types.ModuleType, code: types.CodeType, undo: list[Callable[[], None]]
) -> list[tuple[Any, Any]]:
    """Run `code` in the module's namespace; the (old, new) pairs of what it redefined."""
    namespace = module.__dict__
    before = dict(namespace)

    def restore() -> None:
        namespace.clear()
        namespace.update(before)

    undo.append(restore)
    exec(code, namespace)
    pairs = []
    for key, new in namespace.items():
        old = before.get(key)
        if old is not new and _defined_here(old, module, key) and _defined_here(new, module, key):
            pairs.append((old, new))
    return pairs


def _defined_here(obj: Any, module: types.ModuleType, key: str) -> bool:
    return (
        isinstance(obj, type | types.FunctionType)
        and getattr(obj, "__module__", None) == module.__name__
        and getattr(obj, "__qualname__", None) == key
    )


# -- patching ------------------------------------------------------------------------------------

_METACLASSES = (type, abc.ABCMeta)
_SLOT_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)
_KEEP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "_abc_impl"})


def _patch_all(pairs: list[tuple[Any, Any]], undo: list[Callable[[], None]]) -> None:
    """Patch the (old, new) pairs in place where their shape allows, else rebind."""
    found: dict[int, Any] = {}  # id(new) -> old, for the objects patched in place
    for old, new in pairs:
        if isinstance(old, type):
            _pair_classes(old, new, found)
        elif _function_fits(old, new):
            found[id(new)] = old
    for old, new in pairs:
        if id(new) not in found:
            continue
        if isinstance(old, type):
            _patch_class(old, new, found, undo)
        else:
            _patch_function(old, new, found, undo)
    for module in _touched_modules(pairs):  # the module's names: back to the patched objects
        for key, value in list(module.__dict__.items()):
            mapped = _map(value, found)
            if mapped is not value:
                module.__dict__[key] = mapped
    for old, new in pairs:
        if id(new) not in found:
            _rebind(old, new, undo)


def _pair_classes(old: Any, new: Any, found: dict[int, Any]) -> None:
    """Record `new -> old` for the classes (and their nested classes) patchable in place."""
    if not isinstance(old, type) or not _same_shape(old, new, found):
        return
    found[id(new)] = old
    for key, value in new.__dict__.items():
        inner = old.__dict__.get(key)
        nested = f"{new.__qualname__}.{key}"
        if (
            isinstance(value, type)
            and isinstance(inner, type)
            and value.__qualname__ == nested == inner.__qualname__
        ):
            _pair_classes(inner, value, found)


def _same_shape(old: type, new: type, found: dict[int, Any]) -> bool:
    return (
        type(old) is type(new)
        and type(old) in _METACLASSES
        and tuple(found.get(id(b), b) for b in new.__bases__) == old.__bases__
        and old.__dict__.get("__slots__") == new.__dict__.get("__slots__")
        and old.__basicsize__ == new.__basicsize__
        and old.__itemsize__ == new.__itemsize__
    )


def _patch_class(
    old: type, new: type, found: dict[int, Any], undo: list[Callable[[], None]]
) -> None:
    before = dict(old.__dict__)

    def restore() -> None:
        for key in list(old.__dict__):
            if key not in before and key not in _KEEP:
                delattr(old, key)
        for key, value in before.items():
            if key not in _KEEP and old.__dict__.get(key, _MISSING) is not value:
                setattr(old, key, value)

    undo.append(restore)
    _redirect_class_cell(new, old)
    for key, value in new.__dict__.items():
        if key in _KEEP or isinstance(value, _SLOT_DESCRIPTORS):
            continue  # a slot's descriptor only serves instances of its own class
        current_value: Any = before.get(key, _MISSING)
        if found.get(id(value)) is current_value and isinstance(current_value, type):
            _patch_class(current_value, value, found, undo)  # a nested class, in its turn
            continue
        if _patch_method(current_value, value, found, undo):
            continue
        setattr(old, key, _map(value, found))
    for key, value in before.items():
        if (
            key not in new.__dict__
            and key not in _KEEP
            and not isinstance(value, _SLOT_DESCRIPTORS)
        ):
            delattr(old, key)


_MISSING: Any = object()


def _patch_method(
    old: Any, new: Any, found: dict[int, Any], undo: list[Callable[[], None]]
) -> bool:
    """Give an existing method object the new code, so bound methods held elsewhere (a
    callback, a tool table) run it too; its `__class__` cell still names the old class."""
    if type(old) is not type(new):
        return False
    if isinstance(old, staticmethod | classmethod):
        old, new = old.__func__, new.__func__
    if not _function_fits(old, new):
        return False
    _patch_function(old, new, found, undo)
    return True


def _patch_function(
    old: types.FunctionType,
    new: types.FunctionType,
    found: dict[int, Any],
    undo: list[Callable[[], None]],
) -> None:
    """The old function object runs the new code; `_function_fits` said it can."""
    cells = list(
        zip(old.__code__.co_freevars, old.__closure__ or (), new.__closure__ or (), strict=True)
    )
    cell_values = [(o, o.cell_contents) for name, o, _ in cells if name != "__class__"]
    saved = (
        old.__code__,
        old.__defaults__,
        old.__kwdefaults__,
        old.__doc__,
        dict(old.__annotations__),
        dict(old.__dict__),
    )

    def restore() -> None:
        old.__code__, old.__defaults__, old.__kwdefaults__, old.__doc__ = saved[:4]
        old.__annotations__ = saved[4]
        old.__dict__.clear()
        old.__dict__.update(saved[5])
        for cell, value in cell_values:
            cell.cell_contents = value

    undo.append(restore)
    for name, old_cell, new_cell in cells:
        if name != "__class__":
            old_cell.cell_contents = _map(new_cell.cell_contents, found)
    old.__code__ = new.__code__
    old.__defaults__ = _map(new.__defaults__, found)
    old.__kwdefaults__ = _map(new.__kwdefaults__, found)
    old.__doc__ = new.__doc__
    old.__annotations__ = _map(dict(new.__annotations__), found)
    old.__dict__.clear()
    old.__dict__.update({k: _map(v, found) for k, v in new.__dict__.items()})


def _function_fits(old: Any, new: Any) -> bool:
    """Both plain functions with closures of the same shape, every cell filled."""
    if not isinstance(old, types.FunctionType) or not isinstance(new, types.FunctionType):
        return False
    if old.__code__.co_freevars != new.__code__.co_freevars:
        return False
    try:
        for cell in (*(old.__closure__ or ()), *(new.__closure__ or ())):
            cell.cell_contents  # noqa: B018 - raises ValueError when empty
    except ValueError:
        return False
    return True


def _redirect_class_cell(new: type, old: type) -> None:
    """New methods that call `super()` find their class through a `__class__` cell that names
    the new class object; once they live on the old class, it must name that one."""
    for value in new.__dict__.values():
        for fn in _functions_in(value):
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
                if name == "__class__":
                    try:
                        if cell.cell_contents is new:
                            cell.cell_contents = old
                    except ValueError:
                        pass


def _functions_in(value: Any) -> list[types.FunctionType]:
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        return [
            f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType)
        ]
    inner = getattr(value, "func", None)  # functools.cached_property, partialmethod
    if isinstance(inner, types.FunctionType):
        return [inner]
    return [value] if isinstance(value, types.FunctionType) else []


def _map(value: Any, found: dict[int, Any], depth: int = 3) -> Any:
    """`value` with the new objects patched in place swapped for their old selves, inside
    lists, tuples, sets and dicts too (`tools = [MyTool]` next to the class it names)."""
    old = found.get(id(value))
    if old is not None:
        return old
    if depth == 0:
        return value
    if type(value) is list:
        mapped = [_map(v, found, depth - 1) for v in value]
        if any(a is not b for a, b in zip(mapped, value, strict=True)):
            value[:] = mapped
        return value
    if type(value) is tuple:
        items = tuple(_map(v, found, depth - 1) for v in value)
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if type(value) is dict:
        for key, item in list(value.items()):
            mapped_item = _map(item, found, depth - 1)
            if mapped_item is not item:
                value[key] = mapped_item
        return value
    if type(value) in (set, frozenset):
        items2 = {_map(v, found, depth - 1) for v in value}
        return type(value)(items2) if items2 != value else value
    return value


def _touched_modules(pairs: list[tuple[Any, Any]]) -> list[types.ModuleType]:
    names = dict.fromkeys(new.__module__ for _, new in pairs)
    return [sys.modules[n] for n in names if n in sys.modules]


def _rebind(old: Any, new: Any, undo: list[Callable[[], None]]) -> None:
    """`old` could not take the new code in place: bind `new` wherever an application module
    holds `old` at its top level (`from x import Old`)."""
    for module in list(sys.modules.values()):
        if module is None or not is_application(module):
            continue
        namespace = module.__dict__
        for key, value in list(namespace.items()):
            if value is old:
                namespace[key] = new
                undo.append(functools.partial(namespace.__setitem__, key, old))


def current(obj: Any) -> Any:
    """The newest version of a class or function: what its module binds at its qualified name
    now (the same object when it was patched in place)."""
    target: Any = sys.modules.get(getattr(obj, "__module__", "") or "")
    for part in (getattr(obj, "__qualname__", None) or "<>").split("."):
        target = getattr(target, part, None)
    return target if target is not None else obj


# -- which modules are the application's ---------------------------------------------------------

_LEGION_PATH = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_PACKAGE_PATHS = tuple(
    os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
)
_LIBRARY_PATHS = tuple(
    os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
)


def is_application(module: types.ModuleType) -> bool:
    """A module of the application: loaded from a .py file outside the standard library, the
    installed packages and Legion itself (none of them is reloaded under a running node)."""
    return (
        not_application(getattr(module, "__name__", ""), getattr(module, "__file__", None)) is None
    )


def not_application(name: str, path: object) -> str | None:
    """Why the module `name`, whose source is `path`, is not the application's (a phrase such as
    "part of the standard library"), or None when it is. Only the application's modules are
    reloaded: re-running a library's top level under a live program replaces its objects
    (`os.environ`...) while other modules hold the old ones."""
    if name == "legion" or name.startswith("legion."):
        return "part of Legion"
    if not isinstance(path, str) or not path.endswith(".py"):
        return "not loaded from a Python source file (a built-in or compiled module)"
    real = os.path.realpath(path)
    # A Legion module run as `__main__` (the zygote, `python -m legion...`) has another name:
    # re-executing it would start that program again.
    if real.startswith(_LEGION_PATH + os.sep):
        return "part of Legion"
    if "site-packages" in path or any(real.startswith(p + os.sep) for p in _PACKAGE_PATHS):
        return "an installed package"
    if any(real.startswith(prefix + os.sep) for prefix in _LIBRARY_PATHS):
        return "part of the standard library"
    return None


def dependents(names: Iterable[str]) -> set[str]:
    """`names` and the application modules that use them, directly or through one another: a
    module uses another when its globals hold that module or something defined in it."""
    uses: dict[str, set[str]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not is_application(module):
            continue
        deps = set()
        for value in list(module.__dict__.values()):
            if isinstance(value, types.ModuleType):
                deps.add(value.__name__)
            elif isinstance(value, type | types.FunctionType):
                deps.add(getattr(value, "__module__", "") or "")
        uses[name] = deps
    found = set(names)
    grew = True
    while grew:
        grew = False
        for name, deps in uses.items():
            if name not in found and deps & found:
                found.add(name)
                grew = True
    return found
