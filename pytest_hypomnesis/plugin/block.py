"""What a ``memory_report()`` block measured: ``MeasuredBlock`` and its attribute views.

Its own module, loaded by the ``memory_report`` fixture on first use: the fixtures module
is imported in every pytest run and must not build these classes."""

from __future__ import annotations

import dataclasses
import typing
from types import TracebackType
from typing import TYPE_CHECKING

from pytest_hypomnesis.record import (
    RamRecord,
    SpanRecord,
    VramDeviceRecord,
    vram_increase_bytes,
    vram_peak_bytes,
)

if TYPE_CHECKING:
    from typing import Any, ClassVar

    from pytest_hypomnesis.plugin.engine import Engine, Span

__all__ = ["DeviceFigures", "MeasuredBlock", "RamFigures"]


def _figures_of(name: str, record: type, doc: str, counts: tuple[str, ...] = ()) -> type[_Figures]:
    """A frozen dataclass with the fields of the ``record`` TypedDict, in its order: the
    record's shape is written once, in ``record.py``. A field the record may lack
    defaults to ``None`` (unknown), or to 0 for the ``counts``."""
    hints = typing.get_type_hints(record)
    required_keys: frozenset[str] = vars(record)["__required_keys__"]
    fields: list[tuple[str, object] | tuple[str, object, object]] = [
        (key, hints[key]) for key in hints if key in required_keys
    ]
    fields += [
        (key, hints[key], dataclasses.field(default=0 if key in counts else None))
        for key in hints
        if key not in required_keys
    ]
    view = dataclasses.make_dataclass(name, fields, frozen=True, slots=True)
    # make_dataclass takes a module only from 3.12, and writes its signature as the doc.
    view.__module__, view.__doc__ = __name__, doc
    return typing.cast("type[_Figures]", view)


if TYPE_CHECKING:

    class _Figures:
        """What a type checker knows of a view: a dataclass whose fields are the record's.
        No checker turns TypedDict keys into attributes, so they read as ``Any``; code that
        wants the precise types reads ``MeasuredBlock.record``."""

        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

        def __init__(self, **fields: object) -> None: ...
        def __getattr__(self, name: str) -> Any: ...

    class RamFigures(_Figures): ...

    class DeviceFigures(_Figures): ...

else:
    RamFigures = _figures_of(
        "RamFigures",
        RamRecord,
        "``r.ram`` of a ``memory_report()`` block: attribute access to the record's ``ram``"
        " (``record.RamRecord``; ``python_*`` are ``None`` unless Python allocations were"
        " traced).",
    )
    DeviceFigures = _figures_of(
        "DeviceFigures",
        VramDeviceRecord,
        "``r.vram[i]`` of a ``memory_report()`` block: one device of the record's ``vram``"
        " (``record.VramDeviceRecord``; with any failed reading every figure is ``None``).",
        counts=("failed_samples",),
    )


class MeasuredBlock:
    """What ``with memory_report() as r:`` measured; read it after the block.

    ``r.ram`` (start/peak/end/increase bytes), ``r.vram`` (per device index), and the
    shortcuts ``r.ram_peak_bytes``, ``r.ram_increase_bytes``, ``r.vram_peak_bytes``,
    ``r.vram_increase_bytes`` (over the devices together, the peak being the highest
    per-reading sum; ``None`` without a GPU).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._span: Span | None = None
        self._result: SpanRecord | None = None

    def __enter__(self) -> MeasuredBlock:
        if self._span is not None:
            raise RuntimeError("a memory_report() block can be entered only once")
        self._span = self._engine.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._span is not None
        self._result = self._engine.end(self._span)

    @property
    def record(self) -> SpanRecord:
        """The block's figures as a test record holds them (``ram``, ``vram``, ...)."""
        if self._result is None:
            raise RuntimeError("memory_report(): read the result after the `with` block")
        return self._result

    @property
    def ram(self) -> RamFigures:
        ram = self.record["ram"]
        return RamFigures(
            start_bytes=ram["start_bytes"],
            peak_bytes=ram["peak_bytes"],
            end_bytes=ram["end_bytes"],
            increase_bytes=ram["increase_bytes"],
            method=ram["method"],
        )

    @property
    def vram(self) -> dict[int, DeviceFigures]:
        return {int(i): DeviceFigures(**d) for i, d in self.record["vram"]["devices"].items()}

    @property
    def duration_s(self) -> float:
        return self.record["duration_s"]

    @property
    def ram_peak_bytes(self) -> int | None:
        return self.record["ram"]["peak_bytes"]

    @property
    def ram_increase_bytes(self) -> int | None:
        return self.record["ram"]["increase_bytes"]

    @property
    def vram_peak_bytes(self) -> int | None:
        return vram_peak_bytes(self.record)

    @property
    def vram_increase_bytes(self) -> int | None:
        return vram_increase_bytes(self.record)

    def __repr__(self) -> str:
        if self._result is None:
            return "<MeasuredBlock (not finished)>"
        return (
            f"<MeasuredBlock ram_increase_bytes={self.ram_increase_bytes} "
            f"vram_increase_bytes={self.vram_increase_bytes}>"
        )
