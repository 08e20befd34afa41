"""The exceptions of the runtime. Everything Legion raises on purpose derives from `LegionError`."""

from __future__ import annotations

from typing import Any

from legion.errors import LegionError

__all__ = [
    "AlreadyPresent",
    "AlreadyRegistered",
    "AlreadyStarted",
    "CallTimeout",
    "CallingSelf",
    "ChildNotFound",
    "ChildRestarting",
    "ChildRunning",
    "LegionError",
    "MaxChildren",
    "MessageTooLarge",
    "NoProc",
    "NodeUnavailable",
    "NotRegistered",
    "ProcessExit",
    "RegistryError",
    "SpawnError",
    "StartChildError",
    "SupervisorError",
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
        if message is None:
            try:
                message = f"process exited: {reason!r}"
            except Exception:  # a reason nested too deep to show: it is still the reason
                message = f"process exited with a reason of type {type(reason).__qualname__}"
        super().__init__(message)


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


class MessageTooLarge(LegionError, ValueError):
    """A message (or any frame) is larger than the node accepts; refused at the sender.

    Nothing was sent: the connection and every process live on. `size` is the encoded frame's
    length in bytes, `limit` the node's `max_frame_bytes`.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of {size} bytes (encoded) exceeds the node's limit of {limit} bytes "
            "(max_frame_bytes); nothing was sent. Send a reference to large data (a file path, "
            "a key) instead, or raise the limit where the node starts: "
            "legion.configure(max_frame_bytes=...) before the first legion call (an embedded "
            "node) or LEGION_MAX_FRAME_BYTES in the node's environment"
        )


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


class SupervisorError(LegionError):
    """A supervisor refused an administration request (OTP's `{error, Reason}` results).

    `reason` is OTP's atom as a str: "already_started", "already_present", "running",
    "restarting", "not_found", "max_children", or "start_failed".
    """

    reason: str = "error"

    def __init__(self, message: str, value: Any = None) -> None:
        self.value = value
        super().__init__(message)


class AlreadyStarted(SupervisorError):
    """A child with that id is running (`pid` holds it), or its registered name is taken."""

    reason = "already_started"

    @property
    def pid(self) -> Any:
        return self.value


class AlreadyPresent(SupervisorError):
    """A child with that id exists but is not running: use `restart_child` or `delete_child`."""

    reason = "already_present"


class ChildRunning(SupervisorError):
    """The child is running, so it cannot be restarted or deleted: terminate it first."""

    reason = "running"


class ChildRestarting(SupervisorError):
    """The supervisor is retrying the child's failed restart; terminate it or try again later."""

    reason = "restarting"


class ChildNotFound(SupervisorError):
    """The supervisor has no child with that id (or pid)."""

    reason = "not_found"


class MaxChildren(SupervisorError):
    """A DynamicSupervisor already runs `max_children` children."""

    reason = "max_children"


class StartChildError(SupervisorError):
    """The child's start failed; `value` is the reason (a `Crash` for an exception in `init`)."""

    reason = "start_failed"


class UpgradeError(LegionError):
    """`code_change` failed; the server carries on with its old code and state."""

    def __init__(self, message: str, reason: Any = None) -> None:
        self.reason = reason
        super().__init__(message)
