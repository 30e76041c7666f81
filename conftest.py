"""Repository-root conftest: shared test fixtures (fake NVML library, fake nvidia-smi)
and a pinned terminal so pytester output is stable."""

from __future__ import annotations

pytest_plugins = ["tests.helpers.fakenvml", "tests.helpers.fakesmi"]
