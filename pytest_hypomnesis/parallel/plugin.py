"""The parallel-GPU hooks: pinning xdist workers to GPUs, VRAM admission, the needs
scheduler. Registered by ``plugin.hooks`` only when one of their options is given."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from pytest_hypomnesis.parallel.gpus import VISIBLE_ENV, Gpu, GpuPoolError, visible_gpus
from pytest_hypomnesis.parallel.needs import Need, RecordedNeed, need_of, needs_from_report
from pytest_hypomnesis.plugin.options import Settings

__all__ = ["WAIT_KEY", "ParallelState", "setup"]

WAIT_KEY = pytest.StashKey[float]()
"""Seconds one test waited for admission; read by the record writer."""

WORKERINPUT_KEY = "hypomnesis_gpu"
NEEDS_FILE_KEY = "hypomnesis_needs_file"
"""In the first worker's workerinput: where it writes the needs it collected."""
SCHEDULER_NAME = "hypomnesis-scheduler"
"""The controller's scheduler hooks: ``-p no:hypomnesis-scheduler`` keeps xdist's own."""


class ParallelState:
    """What the parallel hooks found: for the header, and the total admission wait."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.needs: dict[str, RecordedNeed] | None = None
        self.header: list[str] = []
        self.pinned: dict[str, Gpu] = {}
        """Worker id -> its GPU, on the controller."""
        self.admission: AdmissionHooks | None = None


def _load_needs(path: str) -> dict[str, RecordedNeed]:
    from pytest_hypomnesis.report.schema import ReportError, load_report

    try:
        return needs_from_report(load_report(path))
    except ReportError as exc:
        raise pytest.UsageError(f"--hypomnesis-needs: {exc}") from None


def _xdist_controller(config: pytest.Config) -> bool:
    return (
        config.pluginmanager.hasplugin("xdist")
        and not hasattr(config, "workerinput")
        and bool(getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None))
        and getattr(config.option, "dist", "no") != "no"
    )


def setup(config: pytest.Config, settings: Settings) -> ParallelState:
    """Register the hooks this session's options ask for; raises ``pytest.UsageError``."""
    state = ParallelState(config, settings)
    if settings.needs_path is not None:
        state.needs = _load_needs(settings.needs_path)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        pinned = workerinput.get(WORKERINPUT_KEY)
        if isinstance(pinned, dict) and settings.pin_gpus:
            # execnet set it before the worker started; set it again in case a spec
            # without our env (a remote --tx) started this worker.
            os.environ[VISIBLE_ENV] = str(pinned["uuid"])
    controller = _xdist_controller(config)
    if controller:
        if settings.pin_gpus:
            config.pluginmanager.register(PinHooks(state), "hypomnesis-pin-gpus")
        if state.needs is not None or settings.admit:
            # Not registered when blocked by name (-p no:hypomnesis-scheduler).
            config.pluginmanager.register(SchedulerHooks(state), SCHEDULER_NAME)
    else:
        if workerinput is not None and isinstance(workerinput.get(NEEDS_FILE_KEY), str):
            config.pluginmanager.register(NeedsWriter(state, workerinput[NEEDS_FILE_KEY]))
        if settings.pin_gpus and workerinput is None:
            state.header.append("--hypomnesis-pin-gpus: not under pytest-xdist, nothing pinned")
        if settings.admit:
            # Registered by the session plugin after its per-test hooks, so that its
            # setup hook runs first: the wait is outside any measured span.
            state.admission = AdmissionHooks(state, workerinput)
    return state


class PinHooks:
    """On the xdist controller: one GPU per worker, round-robin over the visible GPUs."""

    def __init__(self, state: ParallelState) -> None:
        self.state = state
        self.pool: list[Gpu] | None = None
        self.by_uuid: dict[str, Gpu] = {}

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[Any]) -> None:
        import execnet

        try:
            pool = visible_gpus()
        except GpuPoolError as exc:
            self.state.header.append(f"--hypomnesis-pin-gpus: nothing pinned: {exc}")
            return
        if not pool:
            self.state.header.append(
                f"--hypomnesis-pin-gpus: nothing pinned: {VISIBLE_ENV} names no GPU"
            )
            return
        self.pool = pool
        self.by_uuid = {g.uuid: g for g in pool}
        for position, spec in enumerate(specs):
            if VISIBLE_ENV in spec.env:  # the user's own --tx env wins
                continue
            gpu = pool[position % len(pool)]
            pinned = execnet.XSpec(f"{spec}//env:{VISIBLE_ENV}={gpu.uuid}")
            if spec.id is not None:  # the id xdist already shows progress under (gw0, ...)
                pinned.id = spec.id
            specs[position] = pinned
        uuids = ", ".join(g.uuid for g in pool)
        self.state.header.append(
            f"pinned {len(specs)} worker(s) round-robin to {len(pool)} GPU(s): {uuids}"
        )

    def pytest_configure_node(self, node: Any) -> None:
        uuid = node.gateway.spec.env.get(VISIBLE_ENV)
        gpu = self.by_uuid.get(uuid) if isinstance(uuid, str) else None
        if gpu is not None:
            node.workerinput[WORKERINPUT_KEY] = {
                "uuid": gpu.uuid,
                "nvml_index": gpu.nvml_index,
                "mig": gpu.mig,
            }
            self.state.pinned[str(node.gateway.id)] = gpu


class SchedulerHooks:
    """On the xdist controller, for ``--dist load``: the planned packing with
    ``--hypomnesis-needs``, else (``--hypomnesis-admit``) the handout by fit."""

    def __init__(self, state: ParallelState) -> None:
        self.state = state
        self._capacities: dict[str, int | None] = {}
        self._default: Gpu | None = None
        self._default_read = False
        self._needs_dir: str | None = None
        self._needs_file: str | None = None
        self._writer: object = None
        """The worker asked to write the needs it collected."""

    @pytest.hookimpl(wrapper=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScheduling

        theirs = yield
        option = "--hypomnesis-needs" if self.state.needs is not None else "--hypomnesis-admit"
        dist = config.getvalue("dist")
        if dist != "load":
            self.state.header.append(f"{option}: --dist {dist} keeps its own order")
            return theirs
        if type(theirs) is not LoadScheduling:  # a conftest's or another plugin's own
            self.state.header.append(f"{option}: another plugin's xdist scheduler kept")
            return theirs
        if self.state.needs is not None:
            from pytest_hypomnesis.parallel.scheduler import NeedsScheduling

            return NeedsScheduling(config, log, self.state.needs, self._placement, self._live_needs)
        from pytest_hypomnesis.parallel.fitting import FitScheduling

        return FitScheduling(config, log, {}, self._placement, self._live_needs)

    def pytest_configure_node(self, node: Any) -> None:
        if self.state.config.getvalue("dist") != "load":
            return  # no scheduler of ours reads them
        if self._needs_file is None:
            import tempfile

            self._needs_dir = tempfile.mkdtemp(prefix="hypomnesis-needs-")
            self._needs_file = os.path.join(self._needs_dir, "needs.json")
        if self._writer is None and not os.path.exists(self._needs_file):
            # The first worker writes them; a worker started in place of one that died
            # before it wrote takes over (the file is replaced whole: two writers are safe).
            self._writer = node
            node.workerinput[NEEDS_FILE_KEY] = self._needs_file

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        if node is self._writer:
            self._writer = None

    def _live_needs(self) -> dict[str, int | None] | None:
        from pytest_hypomnesis.parallel.needs import read_worker_needs

        needs = None if self._needs_file is None else read_worker_needs(self._needs_file)
        if needs is None:
            self.state.header.append(
                "handout planned with the report's figures: no needs came from the workers"
                " (not on this host?)"
                if self.state.needs is not None
                else "handout by fit: no needs came from the workers (not on this host?): "
                "each test counts as needing its whole GPU"
            )
        else:
            known = sum(need is not None for need in needs.values())
            how = "planned" if self.state.needs is not None else "by fit, as tests end"
            self.state.header.append(
                f"handout {how}: {known} of {len(needs)} test(s) with a known VRAM need "
                f"(-p no:{SCHEDULER_NAME} keeps xdist's own)"
            )
        return needs

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._needs_dir is not None:
            import shutil

            shutil.rmtree(self._needs_dir, ignore_errors=True)

    def _placement(self, worker: str) -> tuple[str, int | None]:
        """The worker's GPU and its capacity after headroom, for the plan: its pinned GPU,
        else the controller's ``cuda:0``, which an unpinned worker inherits."""
        gpu = self.state.pinned.get(worker)
        if gpu is None:
            if not self._default_read:
                self._default_read = True
                try:
                    visible = visible_gpus()
                except GpuPoolError:
                    visible = []
                self._default = visible[0] if visible else None
            gpu = self._default
        if gpu is None:
            return ("", None)
        if gpu.uuid not in self._capacities:
            self._capacities[gpu.uuid] = self._capacity(gpu)
        return (gpu.uuid, self._capacities[gpu.uuid])

    def _capacity(self, gpu: Gpu) -> int | None:
        from pytest_hypomnesis._errors import BackendFailure
        from pytest_hypomnesis.parallel.admission import headroom_bytes
        from pytest_hypomnesis.parallel.gpus import read_device

        try:
            total = read_device(gpu.nvml_index, gpu.handle_uuid).total_bytes
        except BackendFailure:
            return None  # planned by duration alone; admission still guards
        return total - headroom_bytes(total, self.state.settings.admit_headroom)


def item_need(item: pytest.Item, state: ParallelState) -> Need | None:
    """The need admission takes for ``item``; ``None`` for a bad budget marker (the budget
    hooks fail that test at its setup)."""
    from pytest_hypomnesis.plugin.budgets import BudgetError, budgets_for

    try:
        budgets = budgets_for(
            item, max_ram_bytes=None, max_vram_bytes=state.settings.max_vram_bytes
        )
    except BudgetError:
        return None
    return need_of(item.nodeid, budgets, state.needs)


class NeedsWriter:
    """On the first xdist worker: after collection, before xdist tells the controller,
    each test's need, for the controller's scheduler (the controller never collects)."""

    def __init__(self, state: ParallelState, path: str) -> None:
        self.state = state
        self.path = path

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from pytest_hypomnesis.parallel.needs import write_worker_needs

        needs: dict[str, int | None] = {}
        for item in session.items:
            need = item_need(item, self.state)
            needs[item.nodeid] = None if need is None else need.need_bytes
        try:
            write_worker_needs(self.path, needs)
        except OSError as exc:
            self.state.header.append(f"handout: could not pass the needs on: {exc}")


class AdmissionHooks:
    """Where tests run (a worker, or a run without xdist): wait for VRAM before setup,
    release after teardown."""

    def __init__(self, state: ParallelState, workerinput: dict[str, Any] | None) -> None:
        self.state = state
        self._workerinput = workerinput
        self._admitter: Any = None
        self._resolved = False
        self.unavailable: str | None = None
        self.total_wait_s = 0.0

    def _resolve(self) -> None:
        """The worker's GPU (``cuda:0``) and its ledger, on the first test."""
        self._resolved = True
        from pytest_hypomnesis.parallel.admitter import Admitter
        from pytest_hypomnesis.parallel.gpus import read_device
        from pytest_hypomnesis.parallel.ledger import Ledger, default_ledger_dir

        settings = self.state.settings
        pinned = (self._workerinput or {}).get(WORKERINPUT_KEY)
        if isinstance(pinned, dict):
            gpu = Gpu(int(pinned["nvml_index"]), str(pinned["uuid"]), bool(pinned.get("mig")))
        else:
            try:
                gpus = visible_gpus()
            except GpuPoolError as exc:
                self.unavailable = str(exc)
                return
            if not gpus:
                self.unavailable = f"{VISIBLE_ENV} names no GPU"
                return
            gpu = gpus[0]
        ledger = Ledger(settings.ledger_dir or default_ledger_dir(), gpu.uuid)
        mig_uuid = gpu.handle_uuid
        self._admitter = Admitter(
            ledger,
            gpu.nvml_index,
            headroom_fraction=settings.admit_headroom,
            timeout_s=settings.admit_timeout_s,
            # A MIG device is reached by its UUID: its memory and processes are its own.
            read_device=lambda index: read_device(index, mig_uuid),
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A plain hook: failing here leaves the wrappers of other plugins (logging,
        # capture) their per-test state, as a bad budget marker does.
        if not self._resolved:
            self._resolve()
        admitter = self._admitter
        if admitter is not None:
            self._admit(item, admitter)

    def _admit(self, item: pytest.Item, admitter: Any) -> None:
        from pytest_hypomnesis.parallel.admitter import AdmissionFailed

        need = item_need(item, self.state)
        if need is None:
            return  # the budget hooks fail this test with the marker's message
        message: str | None = None
        try:
            waited = admitter.admit(item.nodeid, need.need_bytes)
        except AdmissionFailed as exc:
            message = f"hypomnesis admission: {item.nodeid}: {exc}"
        if message is not None:
            pytest.fail(message, pytrace=False)
        item.stash[WAIT_KEY] = waited
        self.total_wait_s += waited

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            if self._admitter is not None:
                self._admitter.release(item.nodeid)
