"""The PDH backend against a fake PDH API: parsers, enumeration, listings, spill counters."""

from __future__ import annotations

import pytest

from pytest_hypomnesis import GpuQuerySource, PdhError
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import pdh
from pytest_hypomnesis.probe.pdh import Luid
from tests.helpers.fakewin import (
    ADAPTER,
    NV_LUID,
    PROC,
    FakeAdapter,
    FakeDxgi,
    FakeNames,
    FakePdh,
    _ded,
    _inst,
    _shr,
)
from tests.helpers.units import GIB, MIB

# --- PDH parsers -------------------------------------------------------------------------


def test_pdh_process_instance_parse() -> None:
    assert pdh.parse_process_instance("pid_1234_luid_0x00000000_0x0000C3A1_phys_0") == (
        1234,
        Luid(low=0xC3A1, high=0),
        0,
    )
    # The high part is a LONG: 0xFFFFFFFF reads as -1.
    parsed = pdh.parse_process_instance("pid_7_luid_0xFFFFFFFF_0x00000001_phys_2")
    assert parsed == (7, Luid(low=1, high=-1), 2)
    assert pdh.parse_process_instance("pid_7_luid_0x80000000_0x0_phys_1") == (
        7,
        Luid(low=0, high=-(2**31)),
        1,
    )


@pytest.mark.parametrize(
    "name",
    [
        "_Total",
        "pid_1_luid_0xZZ_0x1_phys_0",
        "pid_1_luid_0x0_0x1",
        "pid_1_luid_0x0_0x1_phys_",
        "pid__luid_0x0_0x1_phys_0",
        "pid_1_luid_0x123456789_0x1_phys_0",
        "pid_99999999999_luid_0x0_0x1_phys_0",
        "pid_1_luid_0x0_0x1_phys_0_extra",
    ],
)
def test_pdh_process_instance_rejects(name: str) -> None:
    assert pdh.parse_process_instance(name) is None


def test_pdh_adapter_instance_parse() -> None:
    assert pdh.parse_adapter_instance("luid_0x00000000_0x0000C3A1_phys_0") == (
        Luid(0xC3A1, 0),
        0,
    )
    assert pdh.parse_adapter_instance("pid_1_luid_0x0_0x1_phys_0") is None
    assert pdh.parse_adapter_instance("_Total") is None


def test_pdh_multi_string_split() -> None:
    assert pdh.split_multi_string("a\0b c\0\0junk\0") == ["a", "b c"]
    assert pdh.split_multi_string("") == []
    assert pdh.split_multi_string("\0\0") == []
    assert pdh.split_multi_string("only") == ["only"]


def test_pdh_fold_sums_segments_and_drops_bad_rows() -> None:
    folded = pdh.fold_process_counters(
        [
            (10, 100, 5),
            (10, 50, None),
            (11, None, 7),
            (12, -1, 7),
            (13, 0, -4),
            (14, 2**64 - 1, 0),
            (14, 5, 0),
        ]
    )
    assert folded == {10: (150, 5), 13: (0, 0), 14: (2**64 - 1, 0)}


def test_pdh_enum_two_call_protocol_with_regrowth() -> None:
    fake = FakePdh({PROC: ["a", "b"]}, data_statuses=[pdh.PDH_MORE_DATA])
    assert pdh.enum_instances(fake, PROC) == ["a", "b"]
    assert fake.enum_calls[0] == (PROC, 0, 0)
    assert len(fake.enum_calls) == 3


def test_pdh_enum_errors() -> None:
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({}, no_object=(PROC,)), PROC)
    assert str(info.value) == (
        "PDH error: GPU Process Memory counter set not registered (pre-WDDM 2.0?)"
    )
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({}, size_status=0xC0000BC6), PROC)
    assert info.value.message == (
        "PdhEnumObjectItemsW (size query, GPU Process Memory) failed: 0xC0000BC6"
    )
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({PROC: ["x"]}, data_statuses=[0xC0000BC6]), ADAPTER)
    assert info.value.message == (
        "PdhEnumObjectItemsW (data fetch, GPU Adapter Memory) failed: 0xC0000BC6"
    )


def test_pdh_enum_empty_success_is_empty() -> None:
    fake = FakePdh({}, size_status=0)

    def empty(name: str, c: int, i: int) -> tuple[int, int, int, str]:
        return 0, 0, 0, ""

    fake.enum_object_items = empty  # type: ignore[method-assign]
    assert pdh.enum_instances(fake, PROC) == []


def test_pdh_listing_luid_filter_sums_names_and_sorting() -> None:
    a0, a1 = _inst(300, 0), _inst(300, 1)
    b, other = _inst(20), _inst(20, luid=(0x99, 0))
    kernel, gone, hidden = _inst(4), _inst(77), _inst(88)
    no_shared, bad_ded, neg = _inst(50), _inst(60), _inst(61)
    fake = FakePdh(
        {PROC: ["_Total", a0, a1, b, other, kernel, gone, hidden, no_shared, bad_ded, neg]},
        values={
            _ded(a0): 100,
            _shr(a0): 1,
            _ded(a1): 200,
            _shr(a1): 2,
            _ded(b): 5 * MIB,
            _shr(b): 0,
            _ded(other): 999,
            _shr(other): 999,
            _ded(kernel): 7,
            _shr(kernel): 0,
            _ded(gone): 8,
            _shr(gone): 0,
            _ded(hidden): 9,
            _shr(hidden): 0,
            _ded(no_shared): 10,
            _ded(bad_ded): None,
            _shr(bad_ded): 3,
            _ded(neg): -5,
            _shr(neg): 3,
        },
        unaddable={_shr(no_shared)},
    )
    names = FakeNames({300: "C:\\Python\\python.exe", 20: "D:/games/game.exe"}, {77: "x"})
    names.table = {50: "svc.exe"}
    rows = pdh.list_processes(
        0, api=fake, dxgi_api=FakeDxgi([FakeAdapter(luid=NV_LUID)]), names=names
    )
    assert [(r.pid, r.name, r.used_bytes, r.shared_used_bytes) for r in rows] == [
        (4, "[kernel]", 7, 0),
        (20, "game.exe", 5 * MIB, 0),
        (50, "svc.exe", 10, 0),
        (77, "[exited]", 8, 0),
        (88, "[exited]", 9, 0),
        (300, "python.exe", 300, 3),
    ]
    assert all(r.source is GpuQuerySource.PDH for r in rows)
    assert fake.opened == fake.closed == 1
    assert names.snapshots == 1


def test_pdh_listing_dedicated_counter_required() -> None:
    inst = _inst(5)
    fake = FakePdh({PROC: [inst]}, values={_shr(inst): 1}, unaddable={_ded(inst)})
    rows = pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]), names=None)
    assert rows == []


def test_pdh_listing_no_matching_instances_is_empty() -> None:
    fake = FakePdh({PROC: [_inst(5, luid=(1, 1))]})
    assert pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()])) == []
    assert fake.opened == 0


def test_pdh_listing_failures_fall_through_as_backend_failure() -> None:
    inst = _inst(5)
    with pytest.raises(BackendFailure) as info:
        pdh.list_processes(3, api=FakePdh({PROC: [inst]}), dxgi_api=FakeDxgi([FakeAdapter()]))
    assert (info.value.backend, info.value.reason) == (
        "PDH",
        "no NVIDIA adapter at device_index 3 via DXGI walk",
    )
    fake = FakePdh({PROC: [inst]}, values={_ded(inst): 1}, collect_statuses=[0xC0000BC9])
    with pytest.raises(BackendFailure, match="PdhCollectQueryData failed: 0xC0000BC9"):
        pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]))
    assert fake.closed == 1
    with pytest.raises(BackendFailure, match="counter set not registered"):
        pdh.list_processes(
            0, api=FakePdh({}, no_object=(PROC,)), dxgi_api=FakeDxgi([FakeAdapter()])
        )


# --- spill adapter query -----------------------------------------------------------------


def _adapter_inst(phys: int, luid: tuple[int, int] = NV_LUID) -> str:
    return f"luid_0x{luid[1] & 0xFFFFFFFF:08X}_0x{luid[0]:08X}_phys_{phys}"


def test_adapter_query_sums_segments_with_dxgi_limit() -> None:
    s0, s1, other = _adapter_inst(0), _adapter_inst(1), _adapter_inst(0, (5, 0))
    fake = FakePdh(
        {ADAPTER: [s0, s1, other]},
        values={
            _ded(s0, ADAPTER): 10 * GIB,
            _shr(s0, ADAPTER): MIB,
            _ded(s1, ADAPTER): GIB,
            _shr(s1, ADAPTER): 2 * MIB,
        },
    )
    query = pdh.open_adapter_query(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]))
    assert query is not None
    assert query.sample() == (11 * GIB, 3 * MIB, 16 * GIB)
    fake.collect_statuses = [0xC0000BC9]
    assert query.sample() is None
    fake.values[_shr(s1, ADAPTER)] = None
    assert query.sample() is None
    query.close()
    query.close()
    assert fake.closed == 1
    assert query.sample() is None


@pytest.mark.parametrize(
    "fake",
    [
        FakePdh({}, no_object=(ADAPTER,)),
        FakePdh({ADAPTER: [_adapter_inst(0, (5, 0)), "_Total"]}),
        FakePdh({ADAPTER: [_adapter_inst(0)]}, unaddable={_shr(_adapter_inst(0), ADAPTER)}),
    ],
)
def test_adapter_query_non_measurable_cases(fake: FakePdh) -> None:
    assert pdh.open_adapter_query(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()])) is None
    assert fake.opened == fake.closed


def test_adapter_query_hard_errors() -> None:
    with pytest.raises(PdhError) as info:
        pdh.open_adapter_query(1, api=FakePdh({}), dxgi_api=FakeDxgi([FakeAdapter()]))
    assert str(info.value) == "PDH error: no NVIDIA adapter at device_index 1 via DXGI walk"
    with pytest.raises(PdhError, match="PdhOpenQueryW failed"):
        pdh.open_adapter_query(
            0,
            api=FakePdh({ADAPTER: [_adapter_inst(0)]}, open_fails=True),
            dxgi_api=FakeDxgi([FakeAdapter()]),
        )
    with pytest.raises(PdhError, match=r"size query, GPU Adapter Memory\) failed"):
        pdh.open_adapter_query(
            0, api=FakePdh({}, size_status=0xC0000BC6), dxgi_api=FakeDxgi([FakeAdapter()])
        )


def test_adapter_counter_set_probe() -> None:
    assert pdh.adapter_counter_set_available(FakePdh({ADAPTER: [_adapter_inst(0)]}))
    assert not pdh.adapter_counter_set_available(FakePdh({ADAPTER: []}))
    assert not pdh.adapter_counter_set_available(FakePdh({}, no_object=(ADAPTER,)))
