"""``python -m pytest_hypomnesis``: the ``hmn`` command."""

from __future__ import annotations

import sys

from pytest_hypomnesis.cli import main

if __name__ == "__main__":
    sys.exit(main())
