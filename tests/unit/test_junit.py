"""JUnit XML properties (``_junit``): stable names, values as strings, tolerant input."""

from __future__ import annotations

from pytest_hypomnesis.report.junit import junit_properties
from tests.helpers.reports import make_budget, make_test
from tests.helpers.units import GIB, MIB


def test_properties_of_a_gpu_test() -> None:
    budgets = [
        make_budget("max_ram", GIB, 10 * MIB, True),
        {**make_budget("max_vram", GIB, None, None), "device": 1},
        make_budget("max_vram", GIB, 2 * GIB, False),
    ]
    record = make_test(
        "t::g",
        ram_increase=10 * MIB,
        vram={"1": (MIB, 3 * MIB), "0": (GIB, 2 * GIB)},
        budgets=budgets,
    )
    props = dict(junit_properties(record))
    assert props["hypomnesis_ram_peak_bytes"] == str(110 * MIB)
    assert props["hypomnesis_ram_increase_bytes"] == str(10 * MIB)
    assert props["hypomnesis_ram_start_bytes"] == str(100 * MIB)
    assert props["hypomnesis_ram_end_bytes"] == str(100 * MIB)
    assert props["hypomnesis_vram_peak_bytes"] == str(2 * GIB + 3 * MIB)
    assert props["hypomnesis_vram_increase_bytes"] == str(GIB + MIB)
    assert props["hypomnesis_gpu0_vram_peak_bytes"] == str(2 * GIB)
    assert props["hypomnesis_gpu1_vram_increase_bytes"] == str(MIB)
    assert props["hypomnesis_gpu0_device_used_peak_bytes"] == str(3 * GIB)
    assert props["hypomnesis_vram_source"] == "nvml"
    assert props["hypomnesis_max_ram_status"] == "passed"
    assert props["hypomnesis_max_ram_limit_bytes"] == str(GIB)
    assert props["hypomnesis_max_vram_gpu1_status"] == "not_checked"
    assert "hypomnesis_max_vram_gpu1_measured_bytes" not in props
    assert props["hypomnesis_max_vram_status"] == "failed"
    names = [name for name, _ in junit_properties(record)]
    assert len(names) == len(set(names))
    # Devices in index order, so the XML is stable.
    assert names.index("hypomnesis_gpu0_vram_peak_bytes") < names.index(
        "hypomnesis_gpu1_vram_peak_bytes"
    )
    assert all(isinstance(v, str) for _, v in junit_properties(record))


def test_missing_figures_are_left_out() -> None:
    record = make_test("t::a", ram_increase=None)
    record["ram"]["start_bytes"] = None
    record["vram"] = None
    record["ram"]["end_bytes"] = True  # not a size: ignored rather than written as "True"
    assert junit_properties(record) == []
    assert junit_properties({"nodeid": "t::b"}) == []
