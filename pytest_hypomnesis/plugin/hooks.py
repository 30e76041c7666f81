"""The ``hypomnesis`` pytest plugin (``pytest --hypomnesis``).

Per-test metrics travel as one plain dict on the call-phase ``TestReport`` attribute
``hypomnesis`` (with ``--hypomnesis-scope=test`` the teardown report carries the final
one), so the controller aggregates in ``pytest_runtest_logreport`` identically with and
without pytest-xdist. Budgets are judged where the test ran, at the end of its call phase.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

import pytest

# Only what every run needs: pytest imports this module whether or not anything is
# measured, so the engine, the budget parser and the report modules load when used.
from pytest_hypomnesis.plugin.fixtures import (
    fake_gpu,
    fake_gpu_factory,
    gpu_device_info_builder,
    memory_report,
    memory_snapshot,
)
from pytest_hypomnesis.plugin.markers import MARKERS, has_budget_marker
from pytest_hypomnesis.plugin.options import Settings, add_options, resolve

if TYPE_CHECKING:
    from pytest_hypomnesis.parallel.plugin import ParallelState
    from pytest_hypomnesis.plugin.budgets import Budget
    from pytest_hypomnesis.plugin.engine import Engine, Span
    from pytest_hypomnesis.plugin.wire import WireIn
    from pytest_hypomnesis.record import BudgetRecord, MeasuredTestRecord, SpanRecord
    from pytest_hypomnesis.report.recordstore import RecordStore
    from pytest_hypomnesis.report.schema import Report
    from pytest_hypomnesis.report.session import SessionReport

__all__ = [
    "HypomnesisPlugin",
    "fake_gpu",
    "fake_gpu_factory",
    "gpu_device_info_builder",
    "memory_report",
    "memory_snapshot",
]

PLUGIN_KEY = pytest.StashKey["HypomnesisPlugin"]()


class _TestState:
    """One measured test's state on the worker, kept in one stash entry: the budgets, the
    open span, and what the call phase measured and recorded."""

    __slots__ = (
        "budget_failure",
        "budgets",
        "call_outcome",
        "call_record",
        "figures",
        "final",
        "span",
        "traced",
        "verdicts",
    )

    def __init__(self, budgets: list[Budget]) -> None:
        self.budgets = budgets
        self.traced = bool(budgets) and any(b.traced for b in budgets)
        """A ``source="python"`` budget: the span traces Python allocations."""
        self.budget_failure: BaseException | None = None
        """The failure a budget raised in the call phase, while it is the test's failure."""
        self.span: Span | None = None
        self.verdicts: list[BudgetRecord] = []
        self.figures: SpanRecord | None = None
        self.call_outcome: str | None = None
        self.final: MeasuredTestRecord | None = None
        self.call_record: MeasuredTestRecord | None = None


_STATE = pytest.StashKey[_TestState]()
_BUDGETS = pytest.StashKey["list[Budget]"]()
"""A test's budgets, read at collection; set only on a test that has any."""
_BAD_BUDGET = pytest.StashKey["str | Exception"]()
"""What reading a test's budget markers at collection found wrong (a ``BudgetError``'s
one line, or what else the parser raised): its setup fails with it."""
_NO_BUDGETS: list[Budget] = []

_WORKER_PEAK_KEY = "hypomnesis_run_ram_peak_bytes"
_WORKER_NOTES_KEY = "hypomnesis_notes"

ATTR = "hypomnesis"
"""The ``TestReport`` attribute that carries a test record (``wire.ATTR`` too)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # Markers are registered even when measuring is off, so --strict-markers accepts them.
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    settings = resolve(config)
    baseline = None
    if settings.compare_path is not None and not hasattr(config, "workerinput"):
        # Only the controller compares; a bad baseline stops the run before any test.
        from pytest_hypomnesis.report.compare import BaselineError, load_baseline

        try:
            baseline = load_baseline(settings.compare_path)
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    plugin = HypomnesisPlugin(config, settings)
    plugin.baseline = baseline
    config.stash[PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, "hypomnesis-session")
    if settings.measure_all and not hasattr(config, "workerinput"):
        # Under xdist the records come as JSON text (`wire.py`); without xdist this is
        # never called. `-p no:hypomnesis-wire-in` keeps the plain dicts.
        from pytest_hypomnesis.plugin.wire import WireIn

        wire = WireIn()
        if config.pluginmanager.register(wire, "hypomnesis-wire-in") is not None:
            plugin._wire_in = wire
    if settings.parallel:
        # Pinning, admission, the needs scheduler: nothing of it is imported without them.
        from pytest_hypomnesis.parallel.plugin import setup

        plugin.parallel = setup(config, settings)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN_KEY, None)
    if plugin is not None:
        engine = plugin.__dict__.get("engine")  # made on first use, if ever
        if engine is not None:
            engine.close()
        for hooks in [*plugin._registered_hooks, plugin._status_hook, plugin._wire_in]:
            if hooks is not None:
                config.pluginmanager.unregister(hooks)
        config.pluginmanager.unregister(plugin)
        del config.stash[PLUGIN_KEY]


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


class HypomnesisPlugin:
    """One session's state: settings, the measurement engine, and (on the controller)
    the collected test records."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.measure_all = settings.measure_all
        """Every test is measured (kept: asked three times per test)."""
        self.worker = str(workerinput["workerid"]) if workerinput else "master"
        self.baseline: Report | None = None
        self.session_report: SessionReport | None = None
        """Built once at session end, on the controller; the terminal section prints it."""
        self.outcomes: dict[str, int] = {}
        """pytest's counts (passed, failed, error, ...), for the reports' headings."""
        self._attempts: dict[str, dict[int, MeasuredTestRecord]] = {}
        """Records by attempt, for tests pytest-rerunfailures ran more than once."""
        self.unchecked_budgets = False
        """A record arrived with a budget that could not be checked: the summary says so."""
        # junitxml reads properties from the teardown report; without it, add nothing.
        self._junit = bool(config.getoption("xmlpath", None))
        self._registered_hooks: list[object] = []
        self._status_hook: _StatusHook | None = None
        """Registered at the first record a budget failed (see ``_watch_status``)."""
        self._wire_in: WireIn | None = None
        """On the controller measuring every test: takes the records in as JSON text."""
        self._build_record: Callable[..., MeasuredTestRecord] | None = None
        """``record.measured_test_record``, bound when the per-test hooks are registered."""
        self.parallel: ParallelState | None = None
        self.worker_peaks: dict[str, int] = {}
        """On the controller: each xdist worker's run RAM peak, from its ``workeroutput``."""
        self.worker_notes: dict[str, None] = {}
        """On the controller: the workers' engine notes (a sidecar that could not start,
        per-process VRAM out of reach), once each, in the order they came."""
        self.warmup_note: str | None = None
        """What ``--hypomnesis-cuda-warmup`` did in this process, for the summary."""

    @functools.cached_property
    def records(self) -> RecordStore:
        """On the controller: the collected test records, kept compact until the end."""
        from pytest_hypomnesis.report.recordstore import RecordStore

        return RecordStore()

    @functools.cached_property
    def engine(self) -> Engine:
        """This process's measurement engine, made on first use: a session that measures
        nothing never imports it. Afterwards a plain attribute read."""
        from pytest_hypomnesis.plugin.engine import Engine

        s = self.settings
        return Engine(
            interval_s=s.interval_s,
            devices=s.devices,
            keep_hwm=s.keep_hwm,
            torch_reset_peak=s.torch_reset_peak,
            vram_source=s.vram_source,
            children=s.children,
        )

    def run_peaks(self) -> dict[str, int]:
        """The run's RAM peak of each of its processes: this one and, on the controller,
        each xdist worker as it reported at its end (CI sees the highest of them)."""
        peaks = dict(self.worker_peaks)
        engine = self.__dict__.get("engine")
        if engine is not None:
            peak = engine.run_peak_bytes()
        else:  # nothing reset the kernel's mark here: it holds the whole run's peak
            from pytest_hypomnesis.probe.chain import lifetime_peak_bytes

            peak = lifetime_peak_bytes()
        if peak is not None:
            peaks[self.worker] = peak
        return peaks

    # -- the worker side: measure and judge (the per-test hooks are the classes below) --

    def _finish_call(self, item: pytest.Item, state: _TestState) -> None:
        span = state.span
        if span is None:
            return
        final = self.settings.scope == "call"
        if final:
            state.span = None
        figures = self.engine.end(span) if final else self.engine.peek(span)
        state.figures = figures
        budgets = state.budgets
        if not budgets:
            return
        from pytest_hypomnesis.plugin.budgets import judge

        verdicts = judge(budgets, figures, scope=self.settings.scope, strict=self.settings.strict)
        # A budget that could not be checked is said in the record (passed None, with the
        # reason), the summary's budget cell and once in its header, never as a warning:
        # a warning raised inside a test's phases becomes that test's error under
        # `filterwarnings = error`, with the test's own failure chained below it.
        state.verdicts = verdicts

    def _budget_failure(self, item: pytest.Item, state: _TestState) -> str | None:
        """The lines that fail a test which passed on its own; ``None`` when no budget
        failed or the test is expected to fail (xfail: budgets are not enforced)."""
        lines = [v["message"] for v in state.verdicts if v["passed"] is False and v["message"]]
        if not lines or _expected_to_fail(item):
            return None
        return "\n".join(lines)

    def _add_junit_properties(
        self, state: _TestState, report: pytest.TestReport, final: MeasuredTestRecord | None
    ) -> None:
        record = state.call_record
        state.call_record = None
        record = final or record
        if record is not None:
            from pytest_hypomnesis.report.junit import junit_properties

            report.user_properties.extend(junit_properties(record))

    @staticmethod
    def _add_budget_section(report: pytest.TestReport, verdicts: list[BudgetRecord]) -> None:
        """A test that failed on its own (an assertion, a pytest-timeout, a strict XPASS)
        keeps its failure; the budget lines go in a section below it."""
        lines = [v["message"] for v in verdicts if v["passed"] is False and v["message"]]
        if not lines or not report.failed or report.longrepr is None:
            return
        text = "\n".join(lines)
        add = getattr(report.longrepr, "addsection", None)
        if add is not None:
            add("hypomnesis", text)
        else:
            report.longrepr = f"{report.longrepr}\n{text}"

    def _record(
        self, item: pytest.Item, span: SpanRecord, outcome: str, state: _TestState
    ) -> MeasuredTestRecord:
        build = self._build_record
        if build is None:  # pragma: no cover - bound with the per-test hooks
            from pytest_hypomnesis.record import measured_test_record

            build = self._build_record = measured_test_record
        record = build(
            span,
            nodeid=item.nodeid,
            outcome=outcome,
            worker=self.worker,
            scope=self.settings.scope,
            budgets=state.verdicts,
            budget_failed=state.budget_failure is not None,
        )
        if self.settings.admit:
            from pytest_hypomnesis.parallel.plugin import WAIT_KEY

            wait_s = item.stash.get(WAIT_KEY, None)
            if wait_s is not None:
                record["admission_wait_s"] = round(wait_s, 6)
        return record

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # An xdist controller runs no test: a context there would only cost memory.
        if self.settings.cuda_warmup and not self.config.pluginmanager.has_plugin("dsession"):
            from pytest_hypomnesis.plugin.frameworks import warm_up_cuda

            self.warmup_note = warm_up_cuda(self.settings.devices)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Last, after every other plugin's reordering and deselection: the budgets of the
        # tests that will run are read here, once, so no per-test hook parses markers.
        s = self.settings
        defaults = s.max_ram_bytes is not None or s.max_vram_bytes is not None
        marked = bad = False
        shared: list[Budget] | None = None  # a default budget: the same for every unmarked test
        for item in items:
            item_marked = has_budget_marker(item)
            if item_marked:
                marked = True
            elif not defaults:
                continue
            elif shared is not None:
                item.stash[_BUDGETS] = shared
                continue
            from pytest_hypomnesis.plugin.budgets import BudgetError, budgets_for

            try:
                budgets = budgets_for(
                    item,
                    max_ram_bytes=s.max_ram_bytes,
                    max_vram_bytes=s.max_vram_bytes,
                    ram_source=s.ram_budget_source,
                    vram_source=s.vram_budget_source,
                )
            except BudgetError as exc:
                # The test alone fails, at its setup, with the one line.
                item.stash[_BAD_BUDGET] = str(exc)
                bad = True
                continue
            except Exception as exc:  # what else the parser raised: the test's error, as before
                item.stash[_BAD_BUDGET] = exc
                bad = True
                continue
            if not item_marked:
                shared = budgets
            if budgets:
                item.stash[_BUDGETS] = budgets
        if s.measure_all or defaults or marked:
            self.enable_runtest_hooks(bad_markers=bad)

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        # Only a session that measures every test knows this early that it measures; the
        # backends are resolved here, before the first test (and at collection otherwise).
        if self.is_worker or not self.settings.measure_all:
            return None
        self.engine.prepare()
        return [f"hypomnesis: {line}" for line in self.engine.header_lines()] or None

    def enable_runtest_hooks(self, *, bad_markers: bool = True) -> None:
        """Register the per-test hooks this session needs, and no others: each one is
        pytest calling into us once (setup, call) or three times (makereport) per test."""
        if self._registered_hooks:
            return
        self.engine.prepare()
        from pytest_hypomnesis.record import measured_test_record

        self._build_record = measured_test_record
        scope_test = self.settings.scope == "test"
        hooks: list[tuple[object, str]] = [(_ReportHook(self), "hypomnesis-runtest")]
        if scope_test or bad_markers:
            # A bad marker fails its test at setup; scope=test begins the span there.
            hooks.append((_SetupHook(self), "hypomnesis-setup"))
        # The span of scope=call (scope=test: its figures so far, for the call report);
        # budgets fail the call itself.
        hooks.append((_CallHook(self), "hypomnesis-call"))
        if scope_test:
            hooks.append((_ScopeTestHooks(self), "hypomnesis-scope-test"))
        workerinput: dict[str, Any] | None = getattr(self.config, "workerinput", None)
        if workerinput is not None:
            from pytest_hypomnesis.plugin.wire import WIRE_KEY, WireOut

            if workerinput.get(WIRE_KEY):  # the controller asked for the records as text
                hooks.append((WireOut(), "hypomnesis-wire-out"))
        if self.parallel is not None and self.parallel.admission is not None:
            # Last registered, so its setup hook runs before the span begins.
            hooks.append((self.parallel.admission, "hypomnesis-admission"))
        for plugin, name in hooks:
            self.config.pluginmanager.register(plugin, name)
            self._registered_hooks.append(plugin)

    # -- the controller side: collect, summarise, write ----------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # First: a budget failure's status hook is registered before the terminal
        # reporter's logreport asks for this report's letter.
        if self.is_worker:
            return
        if self.measure_all:
            key = _pytest_category(report)
            if key is not None:
                self.outcomes[key] = self.outcomes.get(key, 0) + 1
        record = getattr(report, ATTR, None)
        if isinstance(record, dict):
            if self._status_hook is None and record.get("budgets"):
                self._watch_status(record)
            nodeid = report.nodeid
            wire = self._wire_in
            text = None if wire is None else wire.take_text(record)
            # pytest-rerunfailures numbers each attempt's reports (`rerun`) and logs a
            # failed attempt as outcome "rerun": every attempt's record is kept, not only
            # the last one (a rerun that finds the memory resident would hide the first).
            attempt = getattr(report, "rerun", None)
            outcome: str = report.outcome  # "rerun" is pytest-rerunfailures' own
            if attempt or outcome == "rerun" or nodeid in self._attempts:
                from pytest_hypomnesis.record import with_attempts

                per = self._attempts.setdefault(nodeid, {})
                per[attempt if isinstance(attempt, int) else 0] = record  # type: ignore[assignment]
                record = with_attempts([per[k] for k in sorted(per)])
                text = None
            # With scope=test the teardown record (teardown included) replaces the
            # call-phase one.
            self.records.add(nodeid, cast("MeasuredTestRecord", record), text)
            budgets = record.get("budgets")
            if budgets and not self.unchecked_budgets:
                self.unchecked_budgets = any(
                    isinstance(b, dict) and b.get("passed") is None for b in budgets
                )

    def _watch_status(self, record: dict[str, Any]) -> None:
        """Register the hook that gives a budget failure its ``M``/``OVER BUDGET`` status
        at the first record a budget failed: until then pytest's teststatus calls (three
        per test) cost us nothing."""
        from pytest_hypomnesis.record import budget_failed

        if budget_failed(record):
            hook = _StatusHook()
            self.config.pluginmanager.register(hook, "hypomnesis-status")
            self._status_hook = hook

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Runs inside the terminal reporter's wrapper, before its summary: the gate's
        # verdict is known when the summary prints, and a failed gate sets
        # session.exitstatus, which is what pytest exits with.
        if self.is_worker:
            # xdist sends workeroutput to the controller after this hook; a worker that
            # measured nothing has no engine and sends nothing.
            output: dict[str, Any] | None = getattr(self.config, "workeroutput", None)
            if output is not None and "engine" in self.__dict__:
                peak = self.run_peaks().get(self.worker)
                if peak is not None:
                    output[_WORKER_PEAK_KEY] = peak
                # The tests ran here, so what limited their figures is known here only.
                output[_WORKER_NOTES_KEY] = self._engine_notes()
            return
        if not self.settings.measure_all:
            return
        # The report modules load at session end only.
        from pytest_hypomnesis.report.session import build_session_report

        report = build_session_report(
            self.settings,
            self.records.values(),
            baseline=self.baseline,
            gpu_reason=lambda: self.engine.unavailable_reason(),
            pytest_version=pytest.__version__,
            run_peaks=self.run_peaks(),
            notes=self._engine_notes(),
            outcomes=self.outcomes,
            cuda_warmup=self.warmup_note,
        )
        self.session_report = report
        # A failed gate, or a report asked for and not written, fails an otherwise
        # passing run; a failing run stays so.
        if report.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        # pytest-xdist's hook, on the controller, once per worker as it finishes.
        output = getattr(node, "workeroutput", None)
        peak = output.get(_WORKER_PEAK_KEY) if isinstance(output, dict) else None
        if isinstance(peak, int) and not isinstance(peak, bool):
            workerid = getattr(node, "workerinput", {}).get("workerid", "?")
            self.worker_peaks[str(workerid)] = peak
        notes = output.get(_WORKER_NOTES_KEY) if isinstance(output, dict) else None
        for note in notes if isinstance(notes, list) else ():
            if isinstance(note, str):
                self.worker_notes[note] = None

    def _engine_notes(self) -> list[str]:
        engine = self.__dict__.get("engine")  # made on first use: none, nothing measured
        own = [] if engine is None else engine.notes()
        return list(dict.fromkeys([*own, *self.worker_notes]))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.is_worker:
            return
        report = self.session_report
        if report is None and self.unchecked_budgets:
            # No summary asked for, but a budget could not be checked: said once.
            from pytest_hypomnesis.report import terminal

            verbosity = self.config.get_verbosity("hypomnesis")
            terminal.not_checked(self.records.values(), terminalreporter, verbosity)
        if report is not None and (
            self.settings.enabled or report.json_error or report.comparison or report.problems
        ):
            from pytest_hypomnesis.report import terminal  # not imported with nothing to print

            verbosity = self.config.get_verbosity("hypomnesis")
            terminal.summary(report, self.settings, terminalreporter, verbosity)
        if self.parallel is not None:
            for line in self.parallel.header:
                terminalreporter.write_line(f"hypomnesis: {line}")


class _StatusHook:
    """The ``M``/``OVER BUDGET`` status letters of a test a budget failed (on the
    controller), registered at the first such record: pytest asks every report's status."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        # Three times per test: the cheap checks first.
        if report.when != "call" or not report.failed:
            return None
        record = getattr(report, ATTR, None)
        if isinstance(record, dict):
            from pytest_hypomnesis.record import budget_failed, over_budget

            if budget_failed(record):
                if over_budget(record):
                    return "failed", "M", ("OVER BUDGET", {"red": True})
                return "failed", "M", ("BUDGET NOT CHECKED", {"red": True})
        return None


def _state_for(item: pytest.Item, measure_all: bool) -> _TestState | None:
    """A new measured test's state, in its stash; ``None`` for a test not measured (no
    budget, and only tests with budgets measured)."""
    budgets = item.stash.get(_BUDGETS, None)
    if budgets is None:
        if not measure_all:
            return None
        budgets = _NO_BUDGETS
    state = _TestState(budgets)
    item.stash[_STATE] = state
    return state


class _SetupHook:
    """Registered with a bad budget marker among the tests, or with scope=test."""

    def __init__(self, plugin: HypomnesisPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A plain hook, not a wrapper: it runs after every wrapper's setup has begun and
        # before any fixture is set up, so a bad marker fails the test with the other
        # plugins' per-test state whole, and a scope=test span still covers the fixtures.
        bad = item.stash.get(_BAD_BUDGET, None)
        if bad is not None:
            if isinstance(bad, str):
                pytest.fail(bad, pytrace=False)
            raise bad
        s = self.plugin.settings
        if s.scope == "test":
            state = _state_for(item, self.plugin.measure_all)
            if state is not None:
                state.span = self.plugin.engine.begin(timeline=s.timeline, traced=state.traced)


class _CallHook:
    """The call phase: the span of scope=call, and the budgets judged at its end."""

    def __init__(self, plugin: HypomnesisPlugin) -> None:
        self.plugin = plugin
        self.scope_call = plugin.settings.scope == "call"
        self.timeline = plugin.settings.timeline

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        if self.scope_call:
            plugin = self.plugin
            state = _state_for(item, plugin.measure_all)
            if state is None:
                return (yield)
            state.span = plugin.engine.begin(timeline=self.timeline, traced=state.traced)
        else:
            state = item.stash.get(_STATE, None)
            if state is None:
                return (yield)
            plugin = self.plugin
        try:
            result = yield
        except BaseException:
            plugin._finish_call(item, state)
            raise
        plugin._finish_call(item, state)
        if not state.verdicts:
            return result
        text = plugin._budget_failure(item, state)
        if text is None:
            return result
        # The budget fails the call itself, as a test's own failure would: every other
        # plugin sees a failed call with its exception (pytest-rerunfailures matches
        # `--rerun-except max_ram` against it; skipping, junitxml and xdist see pytest's
        # usual failure), not a report rewritten afterwards.
        failure = pytest.fail.Exception(text, pytrace=False)
        state.budget_failure = failure
        raise failure


class _ReportHook:
    """Puts the record on the call report (scope=test: the teardown report, too), where
    it travels to the controller with or without xdist."""

    def __init__(self, plugin: HypomnesisPlugin) -> None:
        self.plugin = plugin
        # Nothing to do at teardown unless a span ends there or junitxml reads it.
        self._teardown = plugin.settings.scope == "test" or plugin._junit

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        when = call.when
        if when == "setup" or (when == "teardown" and not self._teardown):
            return (yield)
        report = yield
        state = item.stash.get(_STATE, None)
        if state is None:
            return report
        plugin = self.plugin
        if when == "call":
            span_figures = state.figures
            if span_figures is not None:
                state.figures = None
                verdicts = state.verdicts
                if verdicts:
                    failure = state.budget_failure
                    if failure is not None and not (
                        report.failed and call.excinfo is not None and call.excinfo.value is failure
                    ):
                        # Another failure took its place (a unittest case's own).
                        state.budget_failure = None
                    if state.budget_failure is None:
                        plugin._add_budget_section(report, verdicts)
                outcome = _outcome(report)
                record = plugin._record(item, span_figures, outcome, state)
                state.call_outcome = outcome
                setattr(report, ATTR, record)
                if plugin._junit:
                    state.call_record = record
        elif when == "teardown":
            final = state.final
            if final is not None:
                setattr(report, ATTR, final)
                state.final = None
            if plugin._junit:
                plugin._add_junit_properties(state, report, final)
        return report


class _ScopeTestHooks:
    """With ``--hypomnesis-scope=test`` only: the span ends after teardown."""

    def __init__(self, plugin: HypomnesisPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            state = item.stash.get(_STATE, None)
            span = None if state is None else state.span
            if state is not None and span is not None:
                state.span = None
                span_figures = self.plugin.engine.end(span)
                if state.call_outcome is not None:
                    state.final = self.plugin._record(item, span_figures, state.call_outcome, state)


def _pytest_category(report: pytest.TestReport) -> str | None:
    """The word pytest's final line counts this report under (``passed``, ``failed``,
    ``error``, ``skipped``, ``xfailed``, ``xpassed``, ``rerun``), or ``None`` for a report
    it does not count (a passing setup or teardown)."""
    outcome: str = report.outcome
    if outcome == "rerun":
        return "rerun"
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when == "call":
        return outcome
    if report.failed:
        return "error"
    if report.skipped:
        return "skipped"
    return None


def _expected_to_fail(item: pytest.Item) -> bool:
    """Whether pytest will treat this test's failure as expected (an xfail that applies,
    as pytest's skipping plugin evaluated it for the call), unless ``--runxfail``."""
    if item.config.getoption("runxfail", False):
        return False
    try:
        from _pytest.skipping import xfailed_key
    except ImportError:  # pragma: no cover - a pytest without it: the markers' presence
        return any(True for _ in item.iter_markers("xfail"))
    return item.stash.get(xfailed_key, None) is not None
