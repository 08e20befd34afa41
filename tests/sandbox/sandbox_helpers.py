"""Shared snippets for sandbox tests."""

from __future__ import annotations

# A real guard bypass (string.Formatter reaches attributes the AST guard never sees): it gives
# the code the live `os` module, so the tests can check what the kernel layers do on their own.
ESCAPE_OS = (
    "import string, random\n"
    "os = string.Formatter().get_field('0.__globals__[_os]', [random.shuffle], {})[0]\n"
)
