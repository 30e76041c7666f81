"""Turning a failed GPU query into what ``hmn`` says on stderr.

The crate prints "no visible GPUs." or "0 GPU processes found." whenever a source fails;
``hmn`` says so only when that is what was measured, and otherwise names what failed and
exits with ``SOURCE_FAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_hypomnesis._errors import HypomnesisError, NoGpuSourceError

__all__ = ["SOURCE_FAILED", "failure_text", "nothing_installed", "reasons_text"]

SOURCE_FAILED = 1
"""Exit status when a figure ``hmn`` would print could not be measured."""

# Reasons that mean the software is not on this machine at all, rather than failing:
# with only these, "no visible GPUs" is what was found.
_ABSENT = (
    "NVML: NVML Shared Library Not Found",
    "NVML: nvidia-ml-py not installed",
    "nvidia-smi: not found on PATH",
)


def nothing_installed(reasons: Sequence[str]) -> bool:
    """Every backend that was tried is simply absent (no driver library, no nvidia-smi)."""
    return all(r.startswith(_ABSENT) for r in reasons)


def reasons_text(reasons: Sequence[str]) -> str:
    return "; ".join(reasons) if reasons else "no GPU backend answered"


def failure_text(exc: HypomnesisError) -> str:
    """The backends' own reasons for "no source answered", else the error's message
    (an index out of range says so, whatever the backends said)."""
    if isinstance(exc, NoGpuSourceError) and exc.reasons:
        return reasons_text(exc.reasons)
    return str(exc)
