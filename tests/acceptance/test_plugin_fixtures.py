"""Acceptance: the plugin's fixtures."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("inner_pytester_run")


def test_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest
        import pytest_hypomnesis as hmn

        def test_memory_snapshot(memory_snapshot):
            snap = memory_snapshot()
            assert isinstance(snap, hmn.Snapshot)
            assert snap.ram_bytes > 0
            assert snap.gpu is None and snap.gpu_unavailable_reason

        def test_memory_snapshot_sees_fake_gpu(memory_snapshot, fake_gpu):
            fake_gpu.add_device(name="NVIDIA Fake")
            fake_gpu.set_process_vram(0, "1GiB")
            snap = memory_snapshot(0)
            assert snap.gpu.used_bytes == 1024**3
            assert snap.gpu_device.name == "NVIDIA Fake"

        def test_memory_report(memory_report):
            with memory_report() as r:
                blob = b"x" * (64 << 20)
                del blob
            assert r.ram_increase_bytes >= 60 << 20
            assert r.ram.peak_bytes >= r.ram.start_bytes + r.ram_increase_bytes
            assert r.ram.end_bytes < r.ram.peak_bytes
            assert r.vram == {} and r.vram_peak_bytes is None
            assert r.duration_s >= 0

        def test_memory_report_vram(memory_report, fake_gpu):
            fake_gpu.add_device()
            fake_gpu.set_process_vram(0, "1GiB")
            with memory_report() as r:
                fake_gpu.set_process_vram(0, "3GiB")
                time.sleep(0.03)
                fake_gpu.set_process_vram(0, "2GiB")
            assert r.vram[0].start_bytes == 1024**3
            assert r.vram_peak_bytes == 3 * 1024**3
            assert r.vram_increase_bytes == 2 * 1024**3
            assert r.vram[0].end_bytes == 2 * 1024**3

        def test_memory_report_result_needs_the_block_to_end(memory_report):
            block = memory_report()
            with pytest.raises(RuntimeError, match="after the `with` block"):
                block.ram
            with block:
                pass
            with pytest.raises(RuntimeError, match="only once"):
                block.__enter__()

        @pytest.mark.max_ram("32MiB")
        def test_nested_report_keeps_the_test_peak(memory_report):
            blob = b"x" * (64 << 20)   # the test's own spike, before the block
            del blob
            with memory_report() as r:  # resets the high-water mark for the block
                pass
            assert r.ram_increase_bytes < 32 << 20

        def test_builder(gpu_device_info_builder):
            builder = gpu_device_info_builder.index(1).name("NVIDIA Test GPU")
            info = builder.total_bytes(16 << 30).build()
            assert info.format_total() == "  GPU 1: total 16384 MB [NVIDIA Test GPU]\\n"
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*::test_nested_report_keeps_the_test_peak OVER BUDGET*"])
