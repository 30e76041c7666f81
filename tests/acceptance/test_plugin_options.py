"""Acceptance: options and their ini twins, the summary section, the JSON report, xdist."""

from __future__ import annotations

import json

import pytest

from pytest_hypomnesis.report.schema import SCHEMA, load_report, validate_report
from tests.helpers.pluginrun import assert_usage_error

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

SUITE = """
import pytest

def test_light():
    pass

def test_heavy():
    blob = b"x" * (64 << 20)

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    pass
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hypomnesis-top=x"], "--hypomnesis-top=x: expected a whole number of rows (0 = all)"),
        (["--hypomnesis-top=-1"], "--hypomnesis-top=-1: expected a whole number*"),
        (["--hypomnesis-scope=session"], "--hypomnesis-scope=session: expected 'call' or 'test'"),
        (["--hypomnesis-interval=0ms"], "--hypomnesis-interval=0ms: invalid duration*"),
        (["--hypomnesis-interval=fast"], "--hypomnesis-interval=fast: invalid duration 'fast'*"),
        (["--hypomnesis-max-ram=2G"], "--hypomnesis-max-ram=2G: invalid size '2G'*ambiguous*"),
        (["--hypomnesis-max-vram=lots"], "--hypomnesis-max-vram=lots: invalid size 'lots'*"),
        (["--hypomnesis-device=gpu0"], "--hypomnesis-device=gpu0: expected a GPU index*"),
        (["--hypomnesis-json=no/such/dir/r.json"], "--hypomnesis-json=no/such/dir/r.json: dir*"),
    ],
)
def test_bad_option_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest(*args)
    assert_usage_error(result, f"ERROR: {message}")


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis_scope = module\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest()
    assert_usage_error(result, "ERROR: ini hypomnesis_scope=module: expected 'call' or 'test'")


def test_nothing_printed_and_no_json_without_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest()
    result.assert_outcomes(passed=5)
    result.stdout.no_fnmatch_line("*= hypomnesis =*")
    result.stdout.no_fnmatch_line("hypomnesis: *")
    assert not list(pytester.path.glob("*.json"))


def test_summary_lists_heaviest_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*= hypomnesis =*",
            "hypomnesis: scope call; RAM peak: kernel high-water mark (exact); no GPU*",
            "test * RAM peak  RAM increase  VRAM peak  VRAM increase  budget  duration",
            "test_summary_lists_heaviest_first.py::test_heavy  * 6?.?? MiB * -  *s",
        ]
    )


def test_top_option_and_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-top=2")
    result.stdout.fnmatch_lines(["3 more not shown (top 2 of 5; top 0 shows all)"])
    pytester.makeini("[pytest]\nhypomnesis = true\nhypomnesis_top = 1\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*= hypomnesis =*", "4 more not shown (top 1 of 5; top 0 shows all)"]
    )
    result = pytester.runpytest("--hypomnesis-top=0")
    result.stdout.no_fnmatch_line("*more not shown*")


def test_verbosity(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    verbose = pytester.runpytest("--hypomnesis", "-v")
    verbose.stdout.fnmatch_lines(["test *RAM start*RAM peak*outcome  worker", "*passed   master"])
    quiet = pytester.runpytest("--hypomnesis", "-q")
    quiet.stdout.fnmatch_lines(["*= hypomnesis =*", "test * RAM peak*"])
    quiet.stdout.no_fnmatch_line("hypomnesis: scope*")
    quieter = pytester.runpytest("--hypomnesis", "-qq")
    quieter.stdout.fnmatch_lines(
        ["hypomnesis: 5 tests measured, 0 over budget; heaviest *::test_heavy (RAM +*)"]
    )
    quieter.stdout.no_fnmatch_line("*= hypomnesis =*")
    pytester.makeini("[pytest]\nverbosity_hypomnesis = 1\n")
    own = pytester.runpytest("--hypomnesis")
    own.stdout.fnmatch_lines(["test *RAM start*RAM peak*outcome  worker"])


def test_json_report_is_valid_and_complete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    (pytester.path / "reports").mkdir()
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=reports/r.json")
    result.assert_outcomes(passed=5)
    path = pytester.path / "reports" / "r.json"
    result.stdout.fnmatch_lines([f"JSON report: {path}"])
    report = load_report(path)
    assert report["schema"] == SCHEMA
    assert report["versions"]["pytest"] == pytest.__version__
    assert report["settings"]["scope"] == "call"
    assert report["settings"]["interval_s"] == 0.01
    assert len(report["tests"]) == 5
    heavy = next(t for t in report["tests"] if t["nodeid"].endswith("test_heavy"))
    start, peak, increase = (
        heavy["ram"][k] for k in ("start_bytes", "peak_bytes", "increase_bytes")
    )
    assert start is not None and peak is not None and increase is not None
    assert increase >= 60 * 1024**2
    assert peak >= start + increase
    assert heavy["worker"] == "master"
    assert heavy["outcome"] == "passed"
    assert heavy["vram"]["devices"] == {}
    assert heavy["vram"]["unavailable_reason"]
    assert report["machine"]["gpu_unavailable_reason"]
    assert list(pytester.path.joinpath("reports").iterdir()) == [path]


def test_json_alone_measures_every_test_without_a_summary(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis_json = out.json\nhypomnesis_interval = 5ms\n")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest()
    result.stdout.no_fnmatch_line("*= hypomnesis =*")
    report = load_report(pytester.path / "out.json")
    assert len(report["tests"]) == 5
    assert report["settings"]["interval_s"] == 0.005


def test_outcomes_in_the_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_fail():
            assert False

        @pytest.mark.xfail(reason="x")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="x")
        def test_xpass():
            pass

        def test_skip_inside():
            pytest.skip("no")
        """
    )
    pytester.runpytest("--hypomnesis-json=out.json")
    report = load_report(pytester.path / "out.json")
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {
        "test_fail": "failed",
        "test_xfail": "xfailed",
        "test_xpass": "xpassed",
        "test_skip_inside": "skipped",
    }


def test_scope_test_record_includes_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def leaves_a_spike():
            yield
            blob = b"x" * (64 << 20)  # only teardown allocates

        def test_a(leaves_a_spike):
            pass
        """
    )
    pytester.runpytest("--hypomnesis-json=call.json")
    pytester.runpytest("--hypomnesis-json=test.json", "--hypomnesis-scope=test")
    call = load_report(pytester.path / "call.json")["tests"][0]
    test = load_report(pytester.path / "test.json")["tests"][0]
    call_increase, test_increase = call["ram"]["increase_bytes"], test["ram"]["increase_bytes"]
    assert call_increase is not None and call_increase < 32 * 1024**2
    assert test_increase is not None and test_increase >= 60 * 1024**2
    assert test["scope"] == "test"


def test_markers_registered_without_measuring_and_plugin_can_be_disabled(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_ram("1TiB")
        @pytest.mark.max_vram("1TiB")
        def test_a():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1, warnings=0)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.max_ram(limit, *, absolute=False, source='rss'):*"])
    # A subprocess: pytest caches known marker names in-process across runs.
    disabled = pytester.runpytest_subprocess("-p", "no:hypomnesis", "--strict-markers")
    disabled.stdout.fnmatch_lines(["*'max_ram' not found in `markers` configuration option*"])
    disabled = pytester.runpytest("-p", "no:hypomnesis", "--hypomnesis")
    assert disabled.ret == pytest.ExitCode.USAGE_ERROR


def test_xdist_one_summary_and_one_json_for_all_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SUITE
        + """
@pytest.mark.max_ram("1MiB")
def test_over():
    blob = b"x" * (64 << 20)
"""
    )
    result = pytester.runpytest("-n", "2", "--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=5, failed=1)
    assert result.stdout.str().count("= hypomnesis =") == 1
    result.stdout.fnmatch_lines(
        [
            "*::test_over * ram 6???% OVER *",
            "1 over budget",
            "OVER BUDGET *::test_over*",
        ]
    )
    report = load_report(pytester.path / "out.json")
    assert len(report["tests"]) == 6
    assert {t["worker"] for t in report["tests"]} == {"gw0", "gw1"}
    raw = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    if raw.get("vram_unavailable_reason"):  # no GPU here: the reason is said once, at the top
        assert all("unavailable_reason" not in t["vram"] for t in raw["tests"])
    assert validate_report(raw) == report


# On the controller: what each worker's record came as, and what the report then held.
WIRE_PROBE = """
import json
import pytest

_seen = []

@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(data):
    sent = data.get("hypomnesis")
    report = yield
    if sent is not None:
        _seen.append([type(sent).__name__, type(report.hypomnesis).__name__])
    return report

def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        with open("wire.json", "w") as fh:
            json.dump(_seen, fh)
"""


def _shape(value: object) -> object:
    """A report's content with its measured figures (numbers) and the worker taken out."""
    if isinstance(value, dict):
        return {k: "*" if k == "worker" else _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__ if isinstance(value, (int, float)) else value


def test_xdist_records_travel_as_json_text_and_arrive_as_dicts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    pytester.makeconftest(WIRE_PROBE)
    reports = []
    for blocked, sent in ((), "str"), (("-p", "no:hypomnesis-wire-in"), "dict"):
        args = ("-n", "2", "--hypomnesis", "--hypomnesis-json=out.json", *blocked)
        pytester.runpytest(*args).assert_outcomes(passed=5)
        assert json.loads((pytester.path / "wire.json").read_text()) == [[sent, "dict"]] * 5
        raw = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
        raw["tests"].sort(key=lambda t: t["nodeid"])
        reports.append(_shape({k: raw[k] for k in ("settings", "tests", "outcomes")}))
    assert reports[0] == reports[1]
