"""Schema 2 of the JSON report: each ``vram.devices`` entry (keyed by CUDA ordinal) says
which GPU it is (``uuid``, ``nvml_index``, ``pci_bus_id``, ``name``, ``parent_uuid`` for a
MIG device), as NVML gave it, never made up; reports of schema 1 still load (``hmn
report``, ``--hypomnesis-compare``), and the gate pairs GPUs by UUID where both reports
have one: a GPU that was ``cuda:1`` in the baseline and is ``cuda:0`` now is one GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.report.compare import compare, format_comparison, parse_fail_exprs
from pytest_hypomnesis.report.schema import SCHEMA, load_report, validate_report
from tests.helpers.cli import hmn
from tests.helpers.fakenvml import (
    GPU0_UUID,
    GPU1_UUID,
    SELF,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    linux_only,
)
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import GIB, MIB

MIG_A = "MIG-3c3c3c3c-0000-4000-8000-000000000003"
PCI1 = "00000000:41:00.0"

ONE_TEST = "def test_nothing():\n    pass\n"


def _json(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    return data


@linux_only
@pytest.mark.usefixtures("inner_pytester_run", "fresh_cuda_mapping")
def test_records_name_the_gpu_behind_each_cuda_ordinal(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvml.set(
        [
            FakeNvmlDevice(name="NVIDIA T4", uuid=GPU0_UUID),
            FakeNvmlDevice(
                name="NVIDIA H100",
                uuid=GPU1_UUID,
                pci_bus_id=PCI1,
                processes=(FakeProcess(SELF, MIB),),
            ),
        ]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    pytester.makepyfile(ONE_TEST)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    report = _json(pytester)
    assert report["schema"] == SCHEMA == "pytest-hypomnesis/2"
    (record,) = report["tests"]
    device = record["vram"]["devices"]["0"]  # cuda:0 is NVML's GPU 1 here
    assert {k: device[k] for k in ("uuid", "nvml_index", "pci_bus_id", "name", "parent_uuid")} == {
        "uuid": GPU1_UUID,
        "nvml_index": 1,
        "pci_bus_id": PCI1,
        "name": "NVIDIA H100",
        "parent_uuid": None,
    }
    assert device["peak_bytes"] == MIB
    (top,) = report["devices"]
    assert (top["index"], top["uuid"], top["nvml_index"], top["pci_bus_id"]) == (
        0,
        GPU1_UUID,
        1,
        PCI1,
    )


@linux_only
@pytest.mark.usefixtures("inner_pytester_run", "fresh_cuda_mapping")
def test_a_mig_device_carries_its_own_uuid_and_its_gpus(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    mig = FakeMigDevice(MIG_A, 3, 0, processes=(FakeProcess(SELF, 64 * MIB),))
    fake_nvml.set(
        [
            FakeNvmlDevice(uuid=GPU0_UUID),
            FakeNvmlDevice(uuid=GPU1_UUID, mig_mode=True, mig_devices=(mig,)),
        ]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_A)
    pytester.makepyfile(ONE_TEST)
    pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json").assert_outcomes(passed=1)
    (record,) = _json(pytester)["tests"]
    device = record["vram"]["devices"]["0"]
    assert (device["uuid"], device["parent_uuid"], device["nvml_index"]) == (MIG_A, GPU1_UUID, 1)
    assert device["name"] == "NVIDIA Fake GPU MIG 1g.10gb"


def test_a_fake_gpu_gives_the_identity_it_has_and_none_else(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def gpus(fake_gpu):
            fake_gpu.add_device(name="Fake A", uuid="GPU-fake-a", pci_bus_id="00000000:01:00.0")
            fake_gpu.add_device(name="Fake B")

        def test_a(gpus):
            pass
        """
    )
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    (record,) = _json(pytester)["tests"]
    first, second = (record["vram"]["devices"][k] for k in ("0", "1"))
    assert (first["uuid"], first["pci_bus_id"], first["name"]) == (
        "GPU-fake-a",
        "00000000:01:00.0",
        "Fake A",
    )
    assert (second["uuid"], second["pci_bus_id"], second["name"]) == (None, None, "Fake B")


# --- schema 1 still loads, and the gate pairs GPUs by UUID ---------------------------------


def _identified(report: dict[str, Any], uuids: dict[str, str]) -> dict[str, Any]:
    """``report`` as schema 2, each test's device ``key`` being GPU ``uuids[key]``."""
    report["schema"] = SCHEMA
    for test in report["tests"]:
        for key, device in test["vram"]["devices"].items():
            device.update(uuid=uuids[key], nvml_index=int(key), pci_bus_id=None, name="GPU")
            device.update(parent_uuid=None)
    report["devices"] = [
        {"index": int(k), "name": "GPU", "uuid": u, "nvml_index": int(k)} for k, u in uuids.items()
    ]
    return report


def test_a_schema_1_report_still_loads_and_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make_report([make_test("t.py::a", vram={"0": (GIB, GIB)})])
    assert old["schema"] == "pytest-hypomnesis/1"
    path = write_report(tmp_path / "old.json", old)
    assert load_report(path)["tests"][0]["vram"]["devices"]["0"]["increase_bytes"] == GIB
    code, out, err = hmn(capsys, "report", str(path))
    assert code == 0, err
    assert "t.py::a" in out


def test_the_gate_pairs_a_gpu_by_uuid_across_ordinals() -> None:
    # The baseline watched two GPUs; GPU-xyz (cuda:1 then) used 1 GiB. This run sees only
    # GPU-xyz, as cuda:0, where the test now uses 3 GiB: a 2 GiB growth on one GPU.
    base = _identified(
        make_report(
            [make_test("t.py::a", vram={"0": (5 * GIB, 5 * GIB), "1": (GIB, GIB)})],
            gpu_names=("GPU", "GPU"),
            watched=None,
        ),
        {"0": GPU0_UUID, "1": GPU1_UUID},
    )
    new = _identified(
        make_report([make_test("t.py::a", vram={"0": (3 * GIB, 3 * GIB)})], watched=None),
        {"0": GPU1_UUID},
    )
    validate_report(base)
    validate_report(new)
    result = compare(base, new, parse_fail_exprs("vram:1GiB"))
    change = result.rows[0].changes["vram"]
    assert (change.before_bytes, change.after_bytes) == (GIB, 3 * GIB)
    assert [r.nodeid for r in result.regressions] == ["t.py::a"]
    assert f"warning: GPU {GPU1_UUID} is GPU 0 in this run, GPU 1 in the baseline; " in "\n".join(
        format_comparison(result)
    )
    # By key (what schema 1 can only do) it was GPU-0a0a's 5 GiB + 1 GiB against 3 GiB.


def test_the_gate_says_when_no_gpu_is_in_common() -> None:
    base = _identified(
        make_report([make_test("t.py::a", vram={"0": (GIB, GIB)})]), {"0": GPU0_UUID}
    )
    new = _identified(make_report([make_test("t.py::a", vram={"0": (GIB, GIB)})]), {"0": GPU1_UUID})
    result = compare(base, new, parse_fail_exprs("vram:0B"))
    assert not result.failed
    assert "not compared: vram:0B for 1 test (no GPU in common)" in format_comparison(result)


def test_a_schema_1_baseline_is_paired_by_key(tmp_path: Path) -> None:
    base = make_report([make_test("t.py::a", vram={"0": (GIB, GIB)})])  # no UUIDs
    new = _identified(
        make_report([make_test("t.py::a", vram={"0": (2 * GIB, 2 * GIB)})]), {"0": GPU1_UUID}
    )
    result = compare(base, new, parse_fail_exprs("vram:512MiB"))
    assert (
        result.rows[0].changes["vram"].before_bytes,
        result.rows[0].changes["vram"].after_bytes,
    ) == (
        GIB,
        2 * GIB,
    )
    assert result.failed


@pytest.mark.usefixtures("inner_pytester_run")
def test_the_plugin_compares_with_a_schema_1_baseline(pytester: pytest.Pytester) -> None:
    base = make_report([make_test("test_a.py::test_nothing", vram=None)])
    write_report(pytester.path / "base.json", base)
    pytester.makepyfile(test_a=ONE_TEST)
    result = pytester.runpytest(
        "--hypomnesis", "--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=ram:1GiB"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*compared 1 test with the baseline (ram:1GiB): no regression*"])
