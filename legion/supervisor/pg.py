"""Process groups (OTP's `pg`): named groups of pids in scopes, for finding workers by role.

A scope is a node-hosted process (`hosted.py`) registered under the scope's name; the default
scope "pg" starts on first use, other scopes with `pg.start(scope)`/`pg.start_link(scope)`.
A scope monitors every member and removes it from every group when it exits. A pid may join a
group several times and is then listed that many times (as in OTP); `leave` removes one
occurrence per pid given. A group exists only while it has members.

`monitor(group)` returns the current members and a reference; from then on the caller receives
`legion.GroupChange(ref, "join" | "leave", group, pids)` for every change, in order, until
`demonitor(ref)` or until the caller exits. `monitor_scope()` does the same for every group.

Reads are calls to the scope (one round trip); with a single node, "local" members are all
members. Only pids of the scope's own node may join (`NotLocal` otherwise), as in OTP.

`call(group, request)` is the pool's front door: it calls one member, and calls another member
once if the first was gone before the request reached it (see `call` for the exact rule).
"""

from __future__ import annotations

import random
import time
from typing import Any

from . import api, wire
from .api import _DEFAULT_TIMEOUT, check_timeout
from .errors import CallTimeout, LegionError, NoProc, ProcessExit, SpawnError
from .hosted import Host
from .server import Ignore
from .terms import GroupChange, Pid, Ref, normalize_reason

__all__ = [
    "DEFAULT_SCOPE",
    "EmptyGroup",
    "NotLocal",
    "Scope",
    "acall",
    "ademonitor",
    "aget_local_members",
    "aget_members",
    "ajoin",
    "aleave",
    "amonitor",
    "amonitor_scope",
    "awhich_groups",
    "call",
    "demonitor",
    "get_local_members",
    "get_members",
    "join",
    "leave",
    "monitor",
    "monitor_scope",
    "start",
    "start_link",
    "which_groups",
    "which_local_groups",
]

DEFAULT_SCOPE = "pg"
_TAG = "$pg"


class NotLocal(LegionError, ValueError):
    """Only pids of the scope's own node may join or leave its groups (OTP's `nolocal`)."""


class EmptyGroup(NoProc):
    """`pg.call` found no member to call: nobody joined the group, or every member is gone."""

    def __init__(self, group: Any, scope: str) -> None:
        super().__init__(group, "member")
        self.scope = scope
        self.args = (
            f"pg group {group!r} in scope {scope!r} has no member to call: nobody joined it, "
            "or its members exited (a supervisor may be restarting them; try again later)",
        )


class Scope:
    """The scope process. Start one with `legion.pg.start_link("my_scope")`."""

    def init(self, arg: Any) -> Any:
        return arg

    @staticmethod
    async def _legion_host(host: Host, cls: type[Scope], arg: Any) -> Any:
        if isinstance(cls().init(arg), Ignore):
            host.init_done(False, True)
            return "normal"
        host.init_done(True)
        return await _ScopeState(host).loop()


class _ScopeState:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.groups: dict[Any, list[Pid]] = {}
        self.members: dict[Pid, Ref] = {}  # one monitor per member pid
        self.member_refs: dict[Ref, Pid] = {}
        self.watches: dict[Ref, tuple[Pid, Any, bool]] = {}  # ref -> (watcher, group, whole scope)
        self.watchers: dict[Pid, tuple[Ref, set[Ref]]] = {}  # watcher -> (its monitor, refs)
        self.watcher_refs: dict[Ref, Pid] = {}

    async def loop(self) -> Any:
        host = self.host
        while True:
            msg: Any = await host.inbox.get()
            kind = type(msg)
            if kind is wire.CallIn:
                self.serve(msg)
            elif kind is wire.DownIn:
                self.down(msg.ref)
            elif kind is wire.ExitIn:
                if msg.sender == host.parent or msg.sender == host.node_pid:
                    return normalize_reason(msg.reason)
            elif kind is wire.StopIn:
                return normalize_reason(msg.reason)

    def _monitor(self, pid: Pid) -> Ref:
        ref = self.host.make_ref()
        self.host.send(wire.Monitor(ref, pid))  # its Down comes to the main loop
        return ref

    def serve(self, msg: wire.CallIn) -> None:
        try:
            request = normalize_reason(wire.decode_term(msg.payload))
            if not (isinstance(request, tuple) and len(request) >= 2 and request[0] == _TAG):
                raise _Bad(f"a pg scope does not understand {request!r}")
            handler = getattr(self, f"op_{request[1]}", None)
            if handler is None:
                raise _Bad(f"unknown pg request {request[1]!r}")
            answer: Any = ("ok", handler(msg.caller, *request[2:]))
        except _Bad as exc:
            answer = ("error", "bad_request", str(exc))
        except NotLocal as exc:
            answer = ("error", "nolocal", str(exc))
        except TypeError as exc:
            answer = ("error", "bad_request", str(exc))
        self.host.reply(msg.caller, msg.ref, answer)

    def _check(self, pids: Any) -> list[Pid]:
        if not isinstance(pids, list | tuple):
            pids = [pids]
        for pid in pids:
            if not isinstance(pid, Pid):
                raise _Bad(f"{pid!r} is not a pid")
            if pid.node != self.host.pid.node:
                raise NotLocal(f"{pid!r} is not a process of this node ({self.host.pid.node})")
        return list(pids)

    def notify(self, kind: str, group: Any, pids: list[Pid]) -> None:
        for ref, (watcher, watched, whole) in list(self.watches.items()):
            if whole or watched == group:
                payload = wire.encode_term(GroupChange(ref, kind, group, pids))
                self.host.send(wire.Send(watcher, payload, 0))

    def op_join(self, caller: Pid, group: Any, pids: Any) -> None:
        pids = self._check(pids)
        hash(group)
        for pid in pids:
            if pid not in self.members:
                ref = self._monitor(pid)
                self.members[pid] = ref
                self.member_refs[ref] = pid
        self.groups.setdefault(group, []).extend(pids)
        self.notify("join", group, pids)

    def op_leave(self, caller: Pid, group: Any, pids: Any) -> str:
        pids = self._check(pids)
        members = self.groups.get(group, [])
        left = []
        for pid in pids:
            if pid in members:
                members.remove(pid)
                left.append(pid)
        if not left:
            return "not_joined"
        if not members:
            del self.groups[group]
        for pid in set(left):
            self._forget_if_unused(pid)
        self.notify("leave", group, left)
        return "ok"

    def _forget_if_unused(self, pid: Pid) -> None:
        if any(pid in members for members in self.groups.values()):
            return
        ref = self.members.pop(pid, None)
        if ref is not None:
            self.member_refs.pop(ref, None)
            self.host.send(wire.Demonitor(ref))

    def op_get_members(self, caller: Pid, group: Any) -> list[Pid]:
        return list(self.groups.get(group, []))

    op_get_local_members = op_get_members

    def op_which_groups(self, caller: Pid) -> list[Any]:
        return list(self.groups)

    op_which_local_groups = op_which_groups

    def _watch(self, caller: Pid, group: Any, whole: bool) -> Ref:
        ref = self.host.make_ref()
        self.watches[ref] = (caller, group, whole)
        if caller not in self.watchers:
            wref = self._monitor(caller)
            self.watchers[caller] = (wref, set())
            self.watcher_refs[wref] = caller
        self.watchers[caller][1].add(ref)
        return ref

    def op_monitor(self, caller: Pid, group: Any) -> tuple[Ref, list[Pid]]:
        hash(group)
        return self._watch(caller, group, False), list(self.groups.get(group, []))

    def op_monitor_scope(self, caller: Pid) -> tuple[Ref, list[tuple[Any, list[Pid]]]]:
        # pairs, not a map: a group may be a tuple, which msgpack cannot decode as a map key
        return self._watch(caller, None, True), [(g, list(m)) for g, m in self.groups.items()]

    def op_demonitor(self, caller: Pid, ref: Any) -> bool:
        watch = self.watches.get(ref) if isinstance(ref, Ref) else None
        if watch is None or watch[0] != caller:
            return False
        del self.watches[ref]
        wref, refs = self.watchers[caller]
        refs.discard(ref)
        if not refs:
            del self.watchers[caller]
            self.watcher_refs.pop(wref, None)
            self.host.send(wire.Demonitor(wref))
        return True

    def down(self, ref: Ref) -> None:
        pid = self.member_refs.pop(ref, None)
        if pid is not None:
            self.members.pop(pid, None)
            for group in list(self.groups):
                members = self.groups[group]
                gone = [p for p in members if p == pid]
                if gone:
                    members[:] = [p for p in members if p != pid]
                    if not members:
                        del self.groups[group]
                    self.notify("leave", group, gone)
        watcher = self.watcher_refs.pop(ref, None)
        if watcher is not None:
            _, refs = self.watchers.pop(watcher)
            for wref in refs:
                self.watches.pop(wref, None)


class _Bad(Exception):
    pass


# -- the API ------------------------------------------------------------------------------------


def start_link(scope: str) -> Pid | None:
    """Start a scope named `scope`, linked to the caller, registered under that name."""
    return api.start_link(Scope, scope, name=scope)


def start(scope: str = DEFAULT_SCOPE) -> Pid | None:
    """Start a scope named `scope` (unlinked), registered under that name."""
    return api.start(Scope, scope, name=scope)


def _unwrap(answer: Any, scope: str, op: str) -> Any:
    answer = normalize_reason(answer)
    if isinstance(answer, tuple) and answer and answer[0] == "ok":
        return answer[1]
    if isinstance(answer, tuple) and len(answer) == 3 and answer[0] == "error":
        if answer[1] == "nolocal":
            raise NotLocal(str(answer[2]))
        raise TypeError(f"pg {op} in scope {scope!r}: {answer[2]}")
    raise LegionError(f"{scope!r} answered pg {op} with {answer!r}; is it a pg scope?")


def _check_pids(pids: Any) -> None:
    items = pids if isinstance(pids, list | tuple) else [pids]
    for pid in items:
        if not isinstance(pid, Pid):
            raise TypeError(f"pg members must be legion.Pid values, not {pid!r}")


def _call(scope: str, op: str, *args: Any) -> Any:
    request = (_TAG, op, *args)
    try:
        answer = api.call(scope, request, None)
    except NoProc:
        if scope != DEFAULT_SCOPE:
            raise NoProc(scope, "pg scope") from None
        try:
            api.start(Scope, DEFAULT_SCOPE, name=DEFAULT_SCOPE)
        except SpawnError as exc:
            raise _stopping(exc) from None
        except LegionError:
            pass  # started meanwhile by someone else
        answer = api.call(scope, request, None)
    return _unwrap(answer, scope, op)


async def _acall(scope: str, op: str, *args: Any) -> Any:
    request = (_TAG, op, *args)
    try:
        answer = await api.acall(scope, request, None)
    except NoProc:
        if scope != DEFAULT_SCOPE:
            raise NoProc(scope, "pg scope") from None
        try:
            await api.astart(Scope, DEFAULT_SCOPE, name=DEFAULT_SCOPE)
        except SpawnError as exc:
            raise _stopping(exc) from None
        except LegionError:
            pass  # started meanwhile by someone else
        answer = await api.acall(scope, request, None)
    return _unwrap(answer, scope, op)


def _stopping(exc: SpawnError) -> Exception:
    """The default scope is gone and cannot start again: the node is shutting down (it stops
    the scope with everything else). A process that uses pg then, a worker whose `init` joins a
    group while its supervisor is being stopped say, ends with reason "shutdown" like its
    peers, instead of crashing with a traceback nobody can act on."""
    if "shutting down" in str(exc):  # the node refuses every spawn once it is stopping
        return ProcessExit("shutdown", "the pg scope is gone: the node is shutting down")
    return exc


def _group(group: Any) -> Any:
    hash(group)
    return group


def join(group: Any, pids: Pid | list[Pid], *, scope: str = DEFAULT_SCOPE) -> None:
    """Add `pids` (one pid or a list) to `group`; a pid may join several times."""
    _check_pids(pids)
    _call(scope, "join", _group(group), pids)


async def ajoin(group: Any, pids: Pid | list[Pid], *, scope: str = DEFAULT_SCOPE) -> None:
    _check_pids(pids)
    await _acall(scope, "join", _group(group), pids)


def leave(group: Any, pids: Pid | list[Pid], *, scope: str = DEFAULT_SCOPE) -> str:
    """Remove one occurrence of each pid: "ok", or "not_joined" if none of them was a member."""
    _check_pids(pids)
    result: str = _call(scope, "leave", _group(group), pids)
    return result


async def aleave(group: Any, pids: Pid | list[Pid], *, scope: str = DEFAULT_SCOPE) -> str:
    _check_pids(pids)
    result: str = await _acall(scope, "leave", _group(group), pids)
    return result


def get_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> list[Pid]:
    """The members of `group`, in join order, with duplicates; [] for no such group."""
    return list(_call(scope, "get_members", _group(group)))


async def aget_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> list[Pid]:
    return list(await _acall(scope, "get_members", _group(group)))


def get_local_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> list[Pid]:
    """The members of `group` on this node (all of them, until nodes form clusters)."""
    return list(_call(scope, "get_local_members", _group(group)))


async def aget_local_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> list[Pid]:
    return list(await _acall(scope, "get_local_members", _group(group)))


def which_groups(*, scope: str = DEFAULT_SCOPE) -> list[Any]:
    """The groups that have members."""
    return list(_call(scope, "which_groups"))


async def awhich_groups(*, scope: str = DEFAULT_SCOPE) -> list[Any]:
    return list(await _acall(scope, "which_groups"))


def which_local_groups(*, scope: str = DEFAULT_SCOPE) -> list[Any]:
    return list(_call(scope, "which_local_groups"))


def monitor(group: Any, *, scope: str = DEFAULT_SCOPE) -> tuple[Ref, list[Pid]]:
    """Watch `group`: its current members, and a ref that `GroupChange` notices will carry."""
    ref, members = _call(scope, "monitor", _group(group))
    return ref, list(members)


async def amonitor(group: Any, *, scope: str = DEFAULT_SCOPE) -> tuple[Ref, list[Pid]]:
    ref, members = await _acall(scope, "monitor", _group(group))
    return ref, list(members)


def monitor_scope(*, scope: str = DEFAULT_SCOPE) -> tuple[Ref, dict[Any, list[Pid]]]:
    """Watch every group of the scope: the current map of groups to members, and a ref."""
    ref, groups = _call(scope, "monitor_scope")
    return ref, {normalize_reason(g): list(m) for g, m in groups}


async def amonitor_scope(*, scope: str = DEFAULT_SCOPE) -> tuple[Ref, dict[Any, list[Pid]]]:
    ref, groups = await _acall(scope, "monitor_scope")
    return ref, {normalize_reason(g): list(m) for g, m in groups}


def demonitor(ref: Ref, *, scope: str = DEFAULT_SCOPE) -> bool:
    """Stop a group or scope monitor: True the first time, False afterwards."""
    result: bool = _call(scope, "demonitor", ref)
    return result


async def ademonitor(ref: Ref, *, scope: str = DEFAULT_SCOPE) -> bool:
    result: bool = await _acall(scope, "demonitor", ref)
    return result


# -- calling a member -----------------------------------------------------------------------------


def call(
    group: Any,
    request: Any,
    timeout: float | None = _DEFAULT_TIMEOUT,
    *,
    scope: str = DEFAULT_SCOPE,
) -> Any:
    """Call one member of `group` (picked at random) and return its reply.

    A member can die while a supervisor replaces it, and the scope learns of a death a moment
    after the node does, so the member picked may already be gone. If the node reports it gone
    before the request reached it (`NoProc`: the request was never delivered), the call is made
    once more, on another member of a fresh read of the group. Any other failure is raised as
    `legion.call` raises it: a `ProcessExit` once the request was delivered (the member may have
    handled it, so it is never sent twice), `CallTimeout`, `AgentCancelled` for an agent.
    Raises `EmptyGroup` (a `NoProc`) when there is no member to call, or `NoProc` when the
    second member was gone too. A member that calls its own group is never picked itself (a
    process calling itself would deadlock): it reaches another member.

    `timeout` bounds the whole call, both attempts included; the default is `legion.call`'s
    (5 s for a server, no limit for an agent this process started).
    """
    check_timeout(timeout, "legion.pg.call")
    deadline = _deadline(timeout)
    me = api.self()
    first = _pick(get_members(group, scope=scope), (me,), group, scope)
    try:
        return api.call(first, request, _left(timeout, deadline, group))
    except NoProc:
        pass  # never delivered: safe to send to another member
    second = _pick(get_members(group, scope=scope), (me, first), group, scope)
    return api.call(second, request, _left(timeout, deadline, group))


async def acall(
    group: Any,
    request: Any,
    timeout: float | None = _DEFAULT_TIMEOUT,
    *,
    scope: str = DEFAULT_SCOPE,
) -> Any:
    """The awaitable twin of `call` (trio and asyncio)."""
    check_timeout(timeout, "legion.pg.acall")
    deadline = _deadline(timeout)
    me = api.self()
    first = _pick(await aget_members(group, scope=scope), (me,), group, scope)
    try:
        return await api.acall(first, request, _left(timeout, deadline, group))
    except NoProc:
        pass  # never delivered: safe to send to another member
    second = _pick(await aget_members(group, scope=scope), (me, first), group, scope)
    return await api.acall(second, request, _left(timeout, deadline, group))


def _pick(members: list[Pid], tried: tuple[Pid, ...], group: Any, scope: str) -> Pid:
    candidates = [pid for pid in members if pid not in tried]
    if not candidates:
        raise EmptyGroup(group, scope)
    return random.choice(candidates)


def _deadline(timeout: Any) -> float | None:
    if timeout is _DEFAULT_TIMEOUT or timeout is None:
        return None
    return time.monotonic() + float(timeout)


def _left(timeout: Any, deadline: float | None, group: Any) -> Any:
    """What remains of the caller's timeout (the default and None pass through)."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallTimeout(group, float(timeout))
    return left
