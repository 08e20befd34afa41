"""The root of every error Legion raises on purpose, shared by the runtime and the sandbox.

It lives alone in this module so the sandbox zygote can import it without the runtime.
"""

from __future__ import annotations


class LegionError(Exception):
    """The root of every error Legion raises on purpose."""
