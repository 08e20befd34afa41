"""``python -m legion.sandbox``: the sandbox CLI."""

import sys

from .cli import main

sys.exit(main())
