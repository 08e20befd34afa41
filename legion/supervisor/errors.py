"""The exceptions of the runtime. Everything Legion raises on purpose derives from `LegionError`."""

from __future__ import annotations

from typing import Any

from legion.errors import LegionError

__all__ = [
    "AlreadyRegistered",
    "CallTimeout",
    "CallingSelf",
    "LegionError",
    "NoProc",
    "NodeUnavailable",
    "NotRegistered",
    "ProcessExit",
    "RegistryError",
    "SpawnError",
    "UpgradeError",
]


class ProcessExit(LegionError):
    """A process ended with `reason`; raised in a caller whose call could not complete.

    Raised inside a process (and not caught), it ends that process with `reason`, the way a
    failed `gen_server:call` takes its caller down in Erlang. Raise it yourself to exit the
    current process with a reason of your choice.
    """

    def __init__(self, reason: Any, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message if message is not None else f"process exited: {reason!r}")


class NoProc(ProcessExit):
    """The destination process does not exist (or died before the request reached it)."""

    def __init__(self, dest: Any, what: str = "process") -> None:
        self.dest = dest
        super().__init__("noproc", f"no such {what}: {dest!r} (it never existed or has exited)")


class CallTimeout(ProcessExit, TimeoutError):
    """No reply within the timeout. The request may still run; a late reply is dropped."""

    def __init__(self, dest: Any, timeout: float) -> None:
        self.dest = dest
        self.timeout = timeout
        super().__init__("timeout", f"no reply from {dest!r} within {timeout} s")


class CallingSelf(LegionError):
    """A process called itself, which would deadlock."""


class SpawnError(LegionError):
    """A process could not be started: its class could not be imported, or `init` failed."""

    def __init__(self, message: str, reason: Any = None) -> None:
        self.reason = reason
        super().__init__(message)


class RegistryError(LegionError):
    """A registered-name operation failed."""


class AlreadyRegistered(RegistryError):
    """The name is taken, or the process already has a name."""

    def __init__(self, message: str, pid: Any = None) -> None:
        self.pid = pid
        super().__init__(message)


class NotRegistered(RegistryError):
    """No process is registered under that name."""


class NodeUnavailable(LegionError):
    """The node controller could not be started or reached, or went away."""


class UpgradeError(LegionError):
    """`code_change` failed; the server carries on with its old code and state."""

    def __init__(self, message: str, reason: Any = None) -> None:
        self.reason = reason
        super().__init__(message)
