"""Acceptance: the max_ram / max_vram markers and the suite-wide default budgets."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the exact RAM peak is Linux-only"
)

SPIKE = """
import pytest

@pytest.mark.max_ram("100MiB")
def test_spike():
    blob = b"x" * (200 * 1024 * 1024)  # written, so resident; freed within ms
    del blob

@pytest.mark.max_ram("100MiB")
def test_small():
    blob = b"x" * (10 * 1024 * 1024)
    del blob
"""


@linux_only
def test_short_ram_spike_fails_and_small_allocation_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SPIKE)
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "max_ram: test used *.?? MiB RAM (peak increase, RSS) > limit 100.00 MiB",
            "OVER BUDGET *::test_spike*",
        ]
    )
    # No summary section without --hypomnesis: budgets work on their own.
    result.stdout.no_fnmatch_line("*= hypomnesis =*")


@linux_only
def test_spike_under_5ms_is_caught(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import mmap
        import time
        import pytest

        SIZE = 200 * 1024 * 1024

        @pytest.mark.max_ram("100MiB")
        def test_fast_spike():
            spike = mmap.mmap(-1, SIZE)
            for offset in range(0, SIZE, mmap.PAGESIZE):
                spike[offset] = 1
            held_from = time.perf_counter()  # all 200 MiB resident from here ...
            spike.close()                    # ... to here
            held_ms = (time.perf_counter() - held_from) * 1000
            assert held_ms < 5, held_ms
        """
    )
    result = pytester.runpytest("--hypomnesis-interval=1s")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["max_ram: test used *.?? MiB RAM (peak increase, RSS) > limit 100.00 MiB"]
    )


def test_letter_m_in_progress_and_word_in_verbose(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_ram(0)
        def test_over():
            blob = b"x" * (64 << 20)
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*.py M*"])
    result = pytester.runpytest("-v")
    result.stdout.fnmatch_lines(["*::test_over OVER BUDGET*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_absolute_budget_judges_the_peak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_ram("1MiB", absolute=True)
        def test_peak():
            pass

        @pytest.mark.max_ram("1TiB", absolute=True)
        def test_peak_ok():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*max_ram: test used * RAM (peak, RSS) > limit 1.00 MiB*"])


def test_own_failure_is_kept_with_the_budget_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_ram(0)
        def test_both():
            blob = b"x" * (64 << 20)
            assert 1 == 2, "the test's own failure"
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: the test's own failure*",
            "*- hypomnesis -*",
            "max_ram: test used * > limit 0 B",
            # The test failed on its own: pytest's label, not "over budget".
            "FAILED *::test_both - A*",
        ]
    )


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ('max_ram("2G")', "*max_ram('2G') on *::test_bad: invalid size '2G': unknown unit 'G'*"),
        ("max_ram()", "*max_ram() on *::test_bad: missing the limit; valid forms: max_ram(*"),
        ('max_ram("1MiB", "2MiB")', "*takes one limit, got 2 positional arguments*"),
        ('max_ram("1MiB", relative=True)', "*unknown keyword 'relative'*"),
        ('max_ram("1MiB", absolute="yes")', "*absolute must be True or False, not 'yes'*"),
        ('max_vram("1GiB", device=-1)', "*device must be a CUDA ordinal*"),
        ('max_vram("1GiB", device=True)', "*device must be a CUDA ordinal*"),
        ("max_vram(-5)", "*a size cannot be negative*"),
        ('max_vram("1GiB", limit="2GiB")', "*limit given twice*"),
    ],
)
def test_bad_marker_errors_only_its_test(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_bad():
            raise AssertionError("must not run")

        def test_good():
            pass
        """
    )
    result = pytester.runpytest("-rA", "--strict-markers")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([expected])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*must not run*")


def test_per_parametrize_budgets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize(
            "mib",
            [
                pytest.param(1, marks=pytest.mark.max_ram("1TiB"), id="roomy"),
                pytest.param(2, marks=pytest.mark.max_ram(0), id="tight"),
                pytest.param(3, id="unbudgeted"),
            ],
        )
        def test_case(mib):
            blob = b"x" * (64 << 20)
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_case[[]tight[]] OVER BUDGET*"])


def test_function_marker_overrides_class_and_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.max_ram(0)

        class TestGroup:
            pytestmark = pytest.mark.max_ram(1)

            @pytest.mark.max_ram("1TiB")
            def test_roomy(self):
                blob = b"x" * (64 << 20)

            def test_class_budget(self):
                blob = b"x" * (64 << 20)
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_class_budget OVER BUDGET*", "*> limit 1 B*"])


def test_default_budget_option_and_marker_override(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_default():
            blob = b"x" * (64 << 20)

        @pytest.mark.max_ram("1TiB")
        def test_override():
            blob = b"x" * (64 << 20)
        """
    )
    result = pytester.runpytest("--hypomnesis-max-ram=1", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::test_default OVER BUDGET*"])


def test_default_budget_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis_max_ram = 1 B\n")
    pytester.makepyfile("def test_default():\n    blob = b'x' * (64 << 20)\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # The command line wins over the ini key.
    result = pytester.runpytest("--hypomnesis-max-ram=1TiB")
    result.assert_outcomes(passed=1)


def test_vram_budget_without_gpu_is_not_checked_without_a_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_vram("1GiB")
        def test_gpu():
            pass
        """
    )
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=1, warnings=0)
    result.stdout.fnmatch_lines(
        [
            "hypomnesis: max_vram: not checked: * (1 test; --hypomnesis-strict fails them)",
            "*vram n/c*",
        ]
    )


def test_vram_budget_without_gpu_strict_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_vram("1GiB")
        def test_gpu():
            pass
        """
    )
    result = pytester.runpytest("--hypomnesis-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*max_vram: could not be checked (*) and --hypomnesis-strict is set*"]
    )


def test_default_vram_budget_not_checked_is_said_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest("--hypomnesis-max-vram=1GiB")
    result.assert_outcomes(passed=2, warnings=0)
    lines = [line for line in result.outlines if "not checked" in line]
    assert len(lines) == 1, result.outlines
    assert "(2 tests; --hypomnesis-strict fails them)" in lines[0]


def test_skip_xfail_raises_and_unittest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import unittest
        import pytest

        @pytest.mark.max_ram(0)
        def test_skipped_inside():
            pytest.skip("not today")

        @pytest.mark.skip(reason="never")
        @pytest.mark.max_ram(0)
        def test_skipped_mark():
            pass

        @pytest.mark.xfail(reason="known", strict=True)
        @pytest.mark.max_ram(0)
        def test_xfail():
            blob = b"x" * (64 << 20)
            assert False

        @pytest.mark.max_ram("1TiB")
        def test_raises():
            with pytest.raises(ZeroDivisionError):
                1 / 0

        class Legacy(unittest.TestCase):
            @pytest.mark.max_ram(0)
            def test_heavy(self):
                self.blob = b"x" * (64 << 20)

            def test_light(self):
                self.assertTrue(True)
        """
    )
    result = pytester.runpytest("--hypomnesis", "-v")
    result.assert_outcomes(passed=2, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*Legacy::test_heavy OVER BUDGET*"])


def test_scope_test_counts_fixtures_and_fails_on_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def big():
            blob = b"x" * (64 << 20)
            yield blob

        @pytest.mark.max_ram("32MiB")
        def test_uses_fixture(big):
            pass
        """
    )
    result = pytester.runpytest("--hypomnesis-scope=call")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("--hypomnesis-scope=test", "-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*(peak increase over setup+call, RSS) > limit 32.00 MiB*"])
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
