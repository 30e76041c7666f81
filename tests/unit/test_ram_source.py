"""The RAM backends are chosen in probe.chain, once for this OS, under ``RamSource``."""

from __future__ import annotations

import pytest

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import RamError
from pytest_hypomnesis.probe import chain, rss, sidecar
from pytest_hypomnesis.probe.rampeak import RamPeakMeter
from tests.helpers.units import MIB


def _chosen(monkeypatch: pytest.MonkeyPatch, system: str) -> chain.RamSource:
    monkeypatch.setattr(_platform, "IS_LINUX", system == "linux")
    monkeypatch.setattr(_platform, "IS_MACOS", system == "darwin")
    monkeypatch.setattr(_platform, "IS_WINDOWS", system == "win32")
    return chain._ram_source()


def test_each_os_gets_its_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(_chosen(monkeypatch, "linux"), chain._ProcfsRam)
    mac = _chosen(monkeypatch, "darwin")
    win = _chosen(monkeypatch, "win32")
    other = _chosen(monkeypatch, "freebsd14")
    assert isinstance(mac, chain._NativeRam) and mac._native is chain._macos_rss
    assert isinstance(win, chain._NativeRam) and win._native is chain._windows_rss
    assert isinstance(other, chain._NativeRam) and other._native is None


def test_linux_reads_procfs_and_meters_the_high_water_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_sidecar(monkeypatch)
    source = _chosen(monkeypatch, "linux")
    monkeypatch.setattr(rss, "procfs_rss", lambda: 300 * MIB)
    assert source.rss_bytes() == 300 * MIB
    meter = source.peak_meter(reset_allowed=False)
    assert isinstance(meter, RamPeakMeter) and meter.method == "sampled"


def test_native_reader_unreachable_falls_back_to_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> int:
        raise OSError("libSystem.B.dylib: cannot open shared object file")

    monkeypatch.setattr(rss, "psutil_rss", lambda: 77 * MIB)
    assert chain._NativeRam(unreachable).rss_bytes() == 77 * MIB
    assert chain._NativeRam(None).rss_bytes() == 77 * MIB


def test_a_native_call_that_ran_and_failed_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def failed() -> int:
        raise RamError("K32GetProcessMemoryInfo failed (GetLastError = 5)")

    monkeypatch.setattr(rss, "psutil_rss", lambda: 77 * MIB)
    with pytest.raises(RamError, match="GetLastError = 5"):
        chain._NativeRam(failed).rss_bytes()


def test_without_a_resettable_mark_peaks_are_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_sidecar(monkeypatch)
    source = chain._NativeRam(None)
    # Even when the caller would allow a reset: there is no mark to reset.
    meter = source.peak_meter(reset_allowed=True)
    assert meter.method == "sampled" and meter.peak_bytes() is None
    assert source.lifetime_peak_bytes() is None


def test_process_rss_goes_through_the_chosen_source(monkeypatch: pytest.MonkeyPatch) -> None:
    class Scripted:
        def rss_bytes(self) -> int:
            return 5 * MIB

        def peak_meter(
            self, *, reset_allowed: bool, children: bool = False, interval_s: float = 0.01
        ) -> RamPeakMeter:
            return RamPeakMeter(reset_allowed=False)

        def lifetime_peak_bytes(self) -> int | None:
            return 9 * MIB

    _no_sidecar(monkeypatch)
    monkeypatch.setattr(chain, "_RAM", Scripted())
    assert chain.process_rss() == 5 * MIB
    assert chain.lifetime_peak_bytes() == 9 * MIB
    assert chain.ram_peak_meter().method == "sampled"


def _no_sidecar(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the source the chain picks, not the sidecar (its own tests):
    with it refused, a meter without a resettable mark samples on a thread."""
    monkeypatch.setattr(sidecar, "DISABLED", "refused by the test")
