"""What ML users hold: the CUDA context apart, framework allocators read without side
effects, budgets on what the test allocated (``source=``), JAX's preallocated pool.

The stand-in frameworks (tests/helpers/standins.py) drive the fake NVML library, so the
driver's per-process figure moves as it does under a real torch, CuPy or JAX.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import standins
from tests.helpers.fakenvml import FakeNvml
from tests.helpers.pluginrun import assert_usage_error
from tests.helpers.units import MIB

pytestmark = pytest.mark.usefixtures("inner_pytester_run")


def _records(pytester: pytest.Pytester) -> dict[str, Any]:
    data = json.loads((pytester.path / "r.json").read_text())
    return {t["nodeid"].split("::")[-1]: t for t in data["tests"]}


def _report(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    return data


TORCH_TESTS = """
import time
import torch
import pytest

MIB = 1024 * 1024

@pytest.mark.max_vram("256MiB")
def test_first_cuda_use():
    x = torch.empty(100 * MIB, device="cuda:0")
    del x  # freed, but torch's cache keeps the block

@pytest.mark.max_vram("50MiB")
def test_from_the_cache():
    x = torch.empty(100 * MIB, device="cuda:0")
    time.sleep(0.06)  # several sampling intervals
    del x
"""


def _run_torch(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """TORCH_TESTS under the torch stand-in, with the summary and the JSON report ``r.json``."""
    standins.install(pytester, "torch")
    pytester.makepyfile(test_t=TORCH_TESTS)
    return pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-json=r.json", *args)


def test_the_cuda_context_is_recorded_apart(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    result = _run_torch(pytester, "-k", "first")
    # 400 MiB of context + 100 MiB of tensor: the 256 MiB budget judges the 100 MiB.
    result.assert_outcomes(passed=1)
    device = _records(pytester)["test_first_cuda_use"]["vram"]["devices"]["0"]
    assert device["start_bytes"] == 0
    assert device["peak_bytes"] == standins.CONTEXT_BYTES + 100 * MIB
    assert device["cuda_context_bytes"] == standins.CONTEXT_BYTES
    assert device["gross_increase_bytes"] == standins.CONTEXT_BYTES + 100 * MIB
    assert device["increase_bytes"] == 100 * MIB
    # The summary marks the test and says why in a footnote.
    result.stdout.fnmatch_lines(
        [
            "*test_first_cuda_use †*",
            "† created the CUDA context (400.00 MiB): left out of its VRAM increase*",
        ]
    )


def test_a_cached_allocation_is_judged_by_the_allocator(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    result = _run_torch(pytester)
    # The driver sees no increase (the cache serves it); the allocator saw 100 MiB.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*max_vram: test used 100.00 MiB VRAM on GPU 0 (peak increase, torch allocator) >*"]
    )
    cached = _records(pytester)["test_from_the_cache"]
    assert cached["vram"]["devices"]["0"]["increase_bytes"] == 0
    torch_figures = cached["vram"]["allocators"]["torch"]["0"]
    assert torch_figures["increase_bytes"] == 100 * MIB
    assert torch_figures["peak_method"] == "sampled"  # below the earlier running peak
    (budget,) = cached["budgets"]
    assert (budget["source"], budget["figure"], budget["measured_bytes"]) == (
        "auto",
        "allocator",
        100 * MIB,
    )


def test_source_driver_judges_the_driver_figure_only(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    result = _run_torch(pytester, "--hypomnesis-vram-budget-source=driver")
    result.assert_outcomes(passed=2)
    (budget,) = _records(pytester)["test_from_the_cache"]["budgets"]
    assert (budget["source"], budget["figure"], budget["measured_bytes"]) == ("driver", "driver", 0)


NO_FRAMEWORK_TESTS = """
import pytest

@pytest.mark.max_vram("1GiB", source="allocator")
def test_allocator_budget():
    pass

@pytest.mark.max_vram("1GiB")
def test_auto_budget():
    pass
"""


def test_an_allocator_budget_without_a_framework_is_not_checked(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    pytester.makepyfile(test_t=NO_FRAMEWORK_TESTS)
    result = pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-json=r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*max_vram: not checked: no framework allocator figure (torch, CuPy or JAX*"]
    )
    records = _records(pytester)
    (allocator,) = records["test_allocator_budget"]["budgets"]
    assert allocator["passed"] is None and allocator["figure"] is None
    # auto falls back to the driver's figure.
    (auto,) = records["test_auto_budget"]["budgets"]
    assert (auto["passed"], auto["figure"], auto["measured_bytes"]) == (True, "driver", 0)

    strict = pytester.runpytest_subprocess("--hypomnesis-strict", "-k", "allocator")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(
        ["*could not be checked (no framework allocator*--hypomnesis-strict*"]
    )


def test_a_bad_budget_source_is_one_clear_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_t='import pytest\n\n@pytest.mark.max_vram("1GiB", source="nvml")\n'
        "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)  # only the offending test
    result.stdout.fnmatch_lines(
        ["*source must be 'auto', 'driver' or 'allocator', not 'nvml'; valid forms: *"]
    )
    usage = pytester.runpytest_subprocess("--hypomnesis-vram-budget-source=nvml")
    assert_usage_error(
        usage, "*--hypomnesis-vram-budget-source=nvml: expected 'auto', 'driver' or 'allocator'*"
    )


def test_cuda_warmup_creates_the_context_before_the_first_test(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    result = _run_torch(
        pytester,
        "--hypomnesis-cuda-warmup",
        "--hypomnesis-vram-budget-source=driver",
        "-k",
        "first",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["hypomnesis: CUDA context created at session start through torch on GPU 0"]
    )
    device = _records(pytester)["test_first_cuda_use"]["vram"]["devices"]["0"]
    assert device["cuda_context_bytes"] is None  # no test paid it
    assert device["start_bytes"] == standins.CONTEXT_BYTES + 1  # the warm-up's 1-byte tensor
    assert device["increase_bytes"] == device["gross_increase_bytes"]
    assert device["increase_bytes"] == 100 * MIB - 1


CUPY_TESTS = """
import time
import cupy

MIB = 1024 * 1024

def test_pool():
    pool = cupy.get_default_memory_pool()
    pool.malloc(64 * MIB)
    time.sleep(0.05)
    pool.free(64 * MIB)
"""


def test_cupy_default_pool_is_read(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    standins.install(pytester, "cupy")
    pytester.makepyfile(test_t=CUPY_TESTS)
    pytester.runpytest_subprocess("--hypomnesis-json=r.json").assert_outcomes(passed=1)
    vram = _records(pytester)["test_pool"]["vram"]
    pool = vram["allocators"]["cupy"]["0"]
    assert pool["peak_bytes"] == pool["increase_bytes"] == 64 * MIB
    assert pool["reserved_peak_bytes"] == 64 * MIB
    assert pool["end_bytes"] == 0
    assert vram["torch_peak_allocated_bytes"] is None
    # The context the pool's first allocation created is kept apart here too.
    assert vram["devices"]["0"]["cuda_context_bytes"] == standins.CONTEXT_BYTES


JAX_TESTS = """
import time
import jax
import pytest

MIB = 1024 * 1024

@pytest.mark.max_vram("1GiB", source="allocator")
def test_jax():
    (device,) = jax.devices()
    device.alloc(32 * MIB)
    time.sleep(0.05)
    device.free(32 * MIB)
"""


def test_jax_preallocation_is_named_and_its_allocator_judged(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    standins.install(pytester, "jax")
    pytester.makepyfile(test_t=JAX_TESTS)
    result = pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-json=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "hypomnesis: JAX preallocates 75% of each GPU: driver (NVML) figures show that "
            "pool, not what a test used; set XLA_PYTHON_CLIENT_PREALLOCATE=false or judge "
            'max_vram(..., source="allocator")'
        ]
    )
    record = _records(pytester)["test_jax"]
    figures = record["vram"]["allocators"]["jax"]["0"]
    assert figures["peak_bytes"] == 32 * MIB
    assert figures["peak_method"] == "counter"  # peak_bytes_in_use rose in the test
    (budget,) = record["budgets"]
    assert (budget["figure"], budget["measured_bytes"]) == ("allocator", 32 * MIB)
    assert _report(pytester)["machine"]["jax_preallocation"] == "75%"

    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    quiet = pytester.runpytest_subprocess("--hypomnesis")
    quiet.assert_outcomes(passed=1)
    assert "JAX preallocates" not in quiet.stdout.str()


def test_jax_without_memory_stats_has_no_allocator_figure(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    standins.install(pytester, "jax", jax_stats=False)
    pytester.makepyfile(test_t=JAX_TESTS)
    result = pytester.runpytest_subprocess("--hypomnesis-json=r.json")
    result.assert_outcomes(passed=1)
    record = _records(pytester)["test_jax"]
    assert record["vram"]["allocators"] is None
    assert record["budgets"][0]["passed"] is None


def test_jax_loaded_but_not_initialised_is_not_initialised_by_the_plugin(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    standins.install(pytester, "jax")
    pytester.makepyfile(
        test_t="import sys\n\ndef test_a():\n    pass\n\n"
        "def test_b():\n    assert not sys.modules['jax._src.xla_bridge']._backends\n"
    )
    pytester.runpytest_subprocess("--hypomnesis").assert_outcomes(passed=2)
