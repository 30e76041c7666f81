"""The PyTorch allocator peak: recorded only when torch is already imported and has
initialised CUDA; the plugin never imports torch itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

# A stand-in for torch.cuda with a caching allocator whose peak the tests move.
FAKE_TORCH_CONFTEST = """
import sys
import types

class _Cuda:
    def __init__(self):
        self.initialized = True
        self.allocated = {0: 0}
        self.peak = {0: 0}
        self.resets = 0

    def is_initialized(self):
        return self.initialized

    def device_count(self):
        return len(self.allocated)

    def reset_peak_memory_stats(self, device):
        self.resets += 1
        self.peak[device] = self.allocated[device]

    def max_memory_allocated(self, device):
        return self.peak[device]

    def memory_allocated(self, device):
        return self.allocated[device]

    def memory_reserved(self, device):
        return self.allocated[device]

    def alloc(self, device, nbytes):
        self.allocated[device] += nbytes
        self.peak[device] = max(self.peak[device], self.allocated[device])

    def free(self, device, nbytes):
        self.allocated[device] -= nbytes

torch = types.ModuleType("torch")
torch.cuda = _Cuda()
sys.modules["torch"] = torch
"""

TESTS = """
import sys

MIB = 1024 * 1024

def test_spike():
    cuda = sys.modules["torch"].cuda
    cuda.alloc(0, 300 * MIB)
    cuda.free(0, 300 * MIB)

def test_quiet():
    pass
"""


def _records(pytester: pytest.Pytester) -> dict[str, Any]:
    data = json.loads((pytester.path / "r.json").read_text())
    return {t["nodeid"].split("::")[-1]: t for t in data["tests"]}


def test_allocator_peak_is_recorded_per_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_TORCH_CONFTEST)
    pytester.makepyfile(test_t=TESTS)
    result = pytester.runpytest_subprocess("--hypomnesis-json=r.json")
    result.assert_outcomes(passed=2)
    records = _records(pytester)
    spike = records["test_spike"]["vram"]
    quiet = records["test_quiet"]["vram"]
    assert isinstance(spike, dict) and isinstance(quiet, dict)
    # The allocator's peak within each test: 300 MiB then 0, read from its running
    # counter (it rose during the spike), which the plugin never resets by default.
    assert spike["torch_peak_allocated_bytes"] == {"0": 300 * 1024 * 1024}
    assert quiet["torch_peak_allocated_bytes"] == {"0": 0}
    assert spike["allocators"]["torch"]["0"]["peak_method"] == "counter"
    assert quiet["allocators"]["torch"]["0"]["peak_method"] == "sampled"


USER_COUNTER_TESTS = """
import sys

GIB = 1024 ** 3

def test_a_big_step():
    cuda = sys.modules["torch"].cuda
    cuda.alloc(0, GIB)
    cuda.free(0, GIB)

def test_the_users_own_peak_check():
    # The user's own reading of torch's running peak, across tests.
    assert sys.modules["torch"].cuda.max_memory_allocated(0) >= GIB
"""


def test_the_users_own_peak_counter_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_TORCH_CONFTEST)
    pytester.makepyfile(test_t=USER_COUNTER_TESTS)
    pytester.runpytest_subprocess("-p", "no:hypomnesis").assert_outcomes(passed=2)
    result = pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-json=r.json")
    result.assert_outcomes(passed=2)
    records = _records(pytester)
    assert records["test_a_big_step"]["vram"]["torch_peak_allocated_bytes"] == {"0": 1024**3}
    assert records["test_the_users_own_peak_check"]["vram"]["torch_peak_allocated_bytes"] == {
        "0": 0
    }


def test_torch_reset_peak_restores_exact_peaks_and_resets_the_users_counter(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_TORCH_CONFTEST)
    pytester.makepyfile(test_t=USER_COUNTER_TESTS)
    result = pytester.runpytest_subprocess(
        "--hypomnesis", "--hypomnesis-torch-reset-peak", "--hypomnesis-json=r.json"
    )
    # As documented: the opt-in resets what the user's own max_memory_allocated() says.
    result.assert_outcomes(passed=1, failed=1)
    big = _records(pytester)["test_a_big_step"]["vram"]
    assert big["torch_peak_allocated_bytes"] == {"0": 1024**3}
    assert big["allocators"]["torch"]["0"]["peak_method"] == "reset"


def test_no_allocator_peak_before_cuda_is_initialised(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_TORCH_CONFTEST + "\ntorch.cuda.initialized = False\n")
    pytester.makepyfile(test_t=TESTS)
    result = pytester.runpytest_subprocess("--hypomnesis-json=r.json")
    result.assert_outcomes(passed=2)
    for record in _records(pytester).values():
        vram = record["vram"]
        assert isinstance(vram, dict)
        assert vram["torch_peak_allocated_bytes"] is None


def test_the_plugin_never_imports_torch(pytester: pytest.Pytester) -> None:
    # An importable "torch" that leaves a mark when imported.
    pytester.mkpydir("torch")
    (pytester.path / "torch" / "__init__.py").write_text(
        "import pathlib\npathlib.Path('torch-was-imported').touch()\n"
    )
    pytester.makepyfile(test_t="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-max-vram=1GiB")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "torch-was-imported").exists()
