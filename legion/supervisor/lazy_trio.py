"""`trio`, imported on its first use.

Supervisors and pg scopes run inside the node (a trio program), but `import legion` in an
application (which may never run a trio loop) imports their modules for the public API; importing
trio there would cost about 100 ms of start-up for nothing.
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyTrio:
    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("trio"), name)


trio: Any = _LazyTrio()
