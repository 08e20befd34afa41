"""Exceptions raised to the *caller* of the sandbox.

Outcomes of the evaluated code (an exception in it, a timeout, a memory bomb, ...) are not raised:
they come back as an :class:`~legion.sandbox.Evaluation` with ``ok=False`` and an ``error_kind``.
These exceptions are for the caller's own mistakes and for a sandbox that cannot run at all.
"""

from __future__ import annotations

from legion.errors import LegionError


class SandboxError(LegionError):
    """Root of every error the sandbox raises to its caller."""


class SandboxUnavailable(SandboxError):
    """The sandbox cannot give the protection it promises on this machine (e.g. seccomp cannot be
    loaded), and the caller did not choose ``unsafe=True``. Fails closed, never silently."""


class SandboxCrashed(SandboxError):
    """The zygote could not be started or died in a way the runtime could not recover from."""


class ToolConfigError(SandboxError, TypeError):
    """The ``tools`` argument cannot be turned into sandbox tool stubs."""
