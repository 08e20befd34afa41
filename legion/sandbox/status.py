"""What the sandbox can do on this machine (``legion.sandbox.info()``)."""

from __future__ import annotations

from dataclasses import dataclass

from .runner import ZYGOTE


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    zygote_pid: int
    python: str
    seccomp: bool
    seccomp_error: str
    landlock_abi: int
    modules: tuple[str, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        """Layers every child gets (``rlimits`` and ``guard`` always; kernel layers if present)."""
        found = ["process", "rlimits", "guard"]
        if self.landlock_abi:
            found.append(f"landlock-abi{self.landlock_abi}")
        if self.seccomp:
            found.append("seccomp")
        return tuple(found)


def info() -> SandboxInfo:
    ready = ZYGOTE.ensure()
    return SandboxInfo(
        ready.pid,
        ready.python,
        ready.seccomp,
        ready.seccomp_error,
        ready.landlock_abi,
        tuple(ready.modules),
    )
