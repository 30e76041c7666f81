"""Which GPUs this process can use, numbered as CUDA numbers them (``cuda:0``, ``cuda:1``).

NVML numbers GPUs by PCI bus; CUDA numbers the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible,
in the order it lists them, where its integer entries count in ``CUDA_DEVICE_ORDER``:
fastest first by default (ties in PCI bus order), ``PCI_BUS_ID`` on request. This module
maps one onto the other through UUIDs, so ``device=0`` means what ``torch.device("cuda:0")``
means in the same process.

- ``parse_cuda_visible_devices(value)``: the entries of a ``CUDA_VISIBLE_DEVICES`` string
  (syntax only), stopping at the first malformed one as CUDA does.
- ``visible_devices(environ=None)``: the ``CudaDevice`` list (``cuda_ordinal``, ``uuid``,
  ``nvml_index``, ``pci_bus_id``, ``name``, ``parent_uuid`` for a MIG device) for the
  given environment (default ``os.environ``), with a ``note`` saying how the order was
  found and what was dropped. Cached per environment and NVML session.
- ``resolve(parsed, gpus)``: the pure mapping, for callers holding their own inventory.

CUDA's rules, from its documentation (CUDA C Programming Guide, "CUDA Environment
Variables") and nvitop's ``CudaDevice``: entries are integer indices or UUIDs (``GPU-``
full or a unique prefix, ``MIG-<uuid>``, legacy ``MIG-GPU-<uuid>/<gi>/<ci>``); only the
devices before the first invalid entry are visible; an empty value hides every GPU; a
repeated entry hides every GPU (CUDA's initialisation fails); integers and UUIDs are not
mixed; and at most one MIG device is enumerated, so a visible GPU in MIG mode shows as its
first MIG device and hides the GPUs after it.

The fastest-first order is the CUDA driver's own, so it is asked for (``cuInit``,
``cuDeviceGet``, ``cuDeviceGetUuid``) in a short-lived helper process: this process gains
no CUDA context or driver state. Only needed when ``CUDA_DEVICE_ORDER`` is not
``PCI_BUS_ID`` and the GPUs differ by name; identical GPUs tie, and ties go in PCI order.
Without a loadable ``libcuda.so.1`` (``HYPOMNESIS_CUDA_LIBRARY`` names another) the PCI
order is assumed and ``note`` says so.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.probe import nvml
from pytest_hypomnesis.probe.nvml import NvmlGpu, NvmlMigDevice

__all__ = [
    "CUDA_LIBRARY_ENV",
    "CudaDevice",
    "ParsedVisibleDevices",
    "VisibleDevices",
    "VisibleEntry",
    "cuda_order",
    "find_own_mig",
    "parse_cuda_visible_devices",
    "resolve",
    "visible_devices",
]

CUDA_LIBRARY_ENV = "HYPOMNESIS_CUDA_LIBRARY"
_HELPER_TIMEOUT_S = 60.0  # cuInit on a machine with many GPUs takes seconds


@dataclass(frozen=True, slots=True)
class CudaDevice:
    """One GPU (or MIG device) this process can use, under its CUDA ordinal.

    ``nvml_index`` is the physical GPU's NVML index (the parent's for a MIG device), what
    ``hmn`` and ``nvidia-smi`` number it by; ``uuid`` is a ``GPU-`` or ``MIG-`` UUID.
    """

    cuda_ordinal: int
    uuid: str | None
    nvml_index: int
    pci_bus_id: str | None
    name: str | None
    parent_uuid: str | None = None  # the GPU a MIG device belongs to
    mig_index: int | None = None  # nvmlDeviceGetMigDeviceHandleByIndex(parent, mig_index)
    mig_source: Literal["named", "first", "found"] | None = None
    """How a MIG device was chosen: named in ``CUDA_VISIBLE_DEVICES``; ``first``, CUDA's
    first MIG device of a GPU in MIG mode (an assumption: which one CUDA gives this
    process is the driver's choice, so it is searched for by PID until found); ``found``,
    the one whose process listing holds this process."""

    @property
    def is_mig(self) -> bool:
        return self.parent_uuid is not None


@dataclass(frozen=True, slots=True)
class VisibleEntry:
    """One well-formed ``CUDA_VISIBLE_DEVICES`` entry, as written (before resolution)."""

    kind: Literal["index", "gpu_uuid", "mig_uuid", "mig_legacy"]
    text: str
    index: int | None = None  # kind "index"
    gpu_instance_id: int | None = None  # kind "mig_legacy"
    compute_instance_id: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedVisibleDevices:
    """``entries`` up to ``stopped_at``, the first malformed entry (``None``: none)."""

    entries: tuple[VisibleEntry, ...]
    stopped_at: str | None = None


@dataclass(frozen=True, slots=True)
class VisibleDevices:
    """The devices this process can use, by CUDA ordinal, and how that was decided.

    ``mapped`` is False when NVML could not list GPUs (``reason`` says why): callers then
    fall back to NVML/backend indices as ordinals.
    """

    devices: tuple[CudaDevice, ...]
    cuda_visible_devices: str | None
    order: str  # how CUDA's enumeration order was found
    note: str | None = None  # what a user should know: dropped entries, assumed order
    mapped: bool = True
    reason: str | None = None

    def by_ordinal(self, ordinal: int) -> CudaDevice | None:
        return self.devices[ordinal] if 0 <= ordinal < len(self.devices) else None

    def describe(self) -> str:
        """One line for a header: ``CUDA devices: 0=GPU-1a2b (NVML 1), ...; <note>``."""
        if not self.mapped:
            return f"CUDA devices: not mapped ({self.reason}); NVML indices used"
        cvd = "unset" if self.cuda_visible_devices is None else repr(self.cuda_visible_devices)
        shown = ", ".join(
            f"{d.cuda_ordinal}={_short(d.uuid)} (NVML {d.nvml_index}"
            + _MIG_SHOWN.get(d.mig_source, ", MIG" if d.is_mig else "")
            + ")"
            for d in self.devices
        )
        line = f"CUDA devices (CUDA_VISIBLE_DEVICES {cvd}, {self.order}): {shown or 'none'}"
        return line if self.note is None else f"{line}; {self.note}"


_MIG_SHOWN: dict[str | None, str] = {
    "first": ", MIG: CUDA's first, this process not seen on any MIG device yet",
    "found": ", MIG: found by this process's PID",
}


def _short(uuid: str | None) -> str:
    if uuid is None:
        return "?"
    prefix, _, rest = uuid.partition("-")
    return f"{prefix}-{rest[:8]}" if rest else uuid


def _leading_integer(entry: str) -> str | None:
    """CUDA reads an entry that starts with digits as the integer they spell (``1abc`` is
    1, as nvitop's parser has it); ``None`` when it does not start with a digit."""
    digits = len(entry) - len(entry.lstrip("0123456789"))
    return entry[:digits] if digits else None


def _parse_entry(entry: str) -> VisibleEntry | None:
    digits = _leading_integer(entry)
    if digits is not None:
        return VisibleEntry("index", digits, index=int(digits))
    if entry.startswith("MIG-GPU-"):
        parts = entry[len("MIG-") :].split("/")
        if len(parts) == 3 and len(parts[0]) > len("GPU-") and all(p.isdigit() for p in parts[1:]):
            return VisibleEntry(
                "mig_legacy",
                parts[0],
                gpu_instance_id=int(parts[1]),
                compute_instance_id=int(parts[2]),
            )
        return None
    if entry.startswith("MIG-") and len(entry) > len("MIG-"):
        return VisibleEntry("mig_uuid", entry)
    if entry.startswith("GPU-") and len(entry) > len("GPU-"):
        return VisibleEntry("gpu_uuid", entry)
    return None


def parse_cuda_visible_devices(value: str | None) -> ParsedVisibleDevices | None:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value; ``None`` when unset (every GPU).

    Syntax only: an entry that names no GPU here (index out of range, unknown UUID) is
    found by ``resolve``. Whitespace around entries is ignored. ``""`` gives no entries.
    """
    if value is None:
        return None
    entries: list[VisibleEntry] = []
    if value.strip() == "":
        return ParsedVisibleDevices(())
    for raw in value.split(","):
        entry = _parse_entry(raw.strip())
        if entry is None:
            return ParsedVisibleDevices(tuple(entries), stopped_at=raw.strip())
        entries.append(entry)
    return ParsedVisibleDevices(tuple(entries))


def _pci_key(gpu: NvmlGpu) -> tuple[int, ...]:
    """Numeric (domain, bus, device, function) of ``00000000:3B:00.0``; unknown sorts last
    in NVML index order (NVML itself enumerates by PCI bus)."""
    bus_id = gpu.pci_bus_id or ""
    try:
        domain, bus, rest = bus_id.split(":")
        device, function = rest.split(".")
        return (0, int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))
    except ValueError:
        return (1, gpu.nvml_index)


def _hex(uuid: str) -> str:
    return uuid.partition("-")[2].replace("-", "").lower()


def _unique(matches: Sequence[NvmlGpu]) -> NvmlGpu | None:
    return matches[0] if len(matches) == 1 else None


def _device(
    ordinal: int,
    gpu: NvmlGpu,
    mig: NvmlMigDevice | None = None,
    mig_source: Literal["named", "first", "found"] = "named",
) -> CudaDevice:
    if mig is None:
        return CudaDevice(ordinal, gpu.uuid, gpu.nvml_index, gpu.pci_bus_id, gpu.name)
    return CudaDevice(
        ordinal,
        mig.uuid,
        gpu.nvml_index,
        gpu.pci_bus_id,
        mig.name,
        gpu.uuid,
        mig.mig_index,
        mig_source,
    )


_Choice = tuple[NvmlGpu, NvmlMigDevice | None]


def _resolve_entry(entry: VisibleEntry, gpus: Sequence[NvmlGpu]) -> _Choice | None:
    if entry.kind == "index":
        assert entry.index is not None
        return (gpus[entry.index], None) if entry.index < len(gpus) else None
    if entry.kind == "gpu_uuid":
        gpu = _unique([g for g in gpus if g.uuid is not None and g.uuid.startswith(entry.text)])
        return None if gpu is None else (gpu, None)
    if entry.kind == "mig_uuid":
        found = [(g, m) for g in gpus for m in g.mig_devices if m.uuid.startswith(entry.text)]
        return found[0] if len(found) == 1 else None
    parent = _unique([g for g in gpus if g.uuid is not None and g.uuid.startswith(entry.text)])
    if parent is None:
        return None
    for mig in parent.mig_devices:
        if (mig.gpu_instance_id, mig.compute_instance_id) == (
            entry.gpu_instance_id,
            entry.compute_instance_id,
        ):
            return parent, mig
    return None


def resolve(
    parsed: ParsedVisibleDevices | None, gpus: Sequence[NvmlGpu]
) -> tuple[tuple[CudaDevice, ...], str | None]:
    """The visible devices by CUDA ordinal and a note on what was dropped and why.

    ``gpus`` is every GPU in CUDA's enumeration order (``cuda_order``): integer entries
    index into it.
    """
    if parsed is None:
        parsed = ParsedVisibleDevices(
            tuple(VisibleEntry("index", str(i), i) for i in range(len(gpus)))
        )
        unset = True
    else:
        unset = False
    chosen: list[_Choice] = []
    notes: list[str] = []
    seen: set[tuple[int, str | None]] = set()
    kind_of_first = None if not parsed.entries else (parsed.entries[0].kind == "index")
    stopped = parsed.stopped_at
    for entry in parsed.entries:
        if (entry.kind == "index") != kind_of_first:
            stopped = entry.text
            notes.append(f"{entry.text!r} mixes indices and UUIDs")
            break
        choice = _resolve_entry(entry, gpus)
        if choice is None:
            stopped = entry.text
            notes.append(f"{entry.text!r} names no single GPU here")
            break
        key = (choice[0].nvml_index, None if choice[1] is None else choice[1].uuid)
        if key in seen:
            return (), f"CUDA_VISIBLE_DEVICES names {entry.text!r} twice: CUDA sees no GPU"
        seen.add(key)
        chosen.append(choice)
    else:
        if stopped is not None:
            notes.append(f"{stopped!r} is not an index or a GPU-/MIG- UUID")
    if stopped is not None:
        notes[-1] = f"CUDA stops at {stopped!r}: " + notes[-1] + ", later entries are ignored"
    migs = [c for c in chosen if c[1] is not None]
    first_mig = False  # the MIG device below is CUDA's first of a GPU named whole
    if migs:
        if len(chosen) > 1:
            notes.append(
                "CUDA enumerates one MIG device: only the first named MIG device is visible"
            )
        chosen = migs[:1]
    else:
        kept: list[_Choice] = []
        for gpu, _ in chosen:
            if not gpu.mig_enabled:
                kept.append((gpu, None))
                continue
            if not gpu.mig_devices:
                notes.append(
                    f"GPU {_short(gpu.uuid)} is in MIG mode with no MIG device: not usable"
                )
                continue
            if kept or len(chosen) > 1:
                notes.append(
                    f"GPU {_short(gpu.uuid)} is in MIG mode: CUDA enumerates its first MIG "
                    "device only and no other GPU"
                )
            kept = [(gpu, gpu.mig_devices[0])]
            first_mig = True
            break
        chosen = kept
    if not unset and not parsed.entries and parsed.stopped_at is None:
        notes.append("CUDA_VISIBLE_DEVICES is empty: no GPU is visible")
    source: Literal["named", "first"] = "first" if first_mig else "named"
    devices = tuple(_device(i, gpu, mig, source) for i, (gpu, mig) in enumerate(chosen))
    return devices, "; ".join(notes) or None


# ---- CUDA's enumeration order -----------------------------------------------------------

_HELPER = r"""
import ctypes, sys
try:
    lib = ctypes.CDLL(sys.argv[1])
except OSError as exc:
    print("error", exc)
    raise SystemExit(0)
def name(code):
    text = ctypes.c_char_p()
    fn = getattr(lib, "cuGetErrorName", None)
    if fn is not None and fn(code, ctypes.byref(text)) == 0 and text.value:
        return text.value.decode("ascii", "replace")
    return "CUresult %d" % code
def check(code, call):
    if code != 0:
        print("error", call, name(code))
        raise SystemExit(0)
check(lib.cuInit(0), "cuInit")
count = ctypes.c_int()
check(lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
get_uuid = getattr(lib, "cuDeviceGetUuid_v2", None) or lib.cuDeviceGetUuid
for ordinal in range(count.value):
    device = ctypes.c_int()
    check(lib.cuDeviceGet(ctypes.byref(device), ordinal), "cuDeviceGet")
    uuid = (ctypes.c_char * 16)()
    check(get_uuid(uuid, device), "cuDeviceGetUuid")
    print("uuid", bytes(uuid).hex())
"""


def _driver_order(environ: Mapping[str, str]) -> list[str]:
    """UUID hex digits of every CUDA device, fastest first, from the CUDA driver in a
    helper process (without CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER, so it lists all)."""
    import subprocess  # only when the order must be asked for: `hmn` starts without it

    library = environ.get(CUDA_LIBRARY_ENV) or "libcuda.so.1"
    env = {
        k: v for k, v in environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _HELPER, library],
            env=env,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendFailure("CUDA", f"helper process failed: {exc}") from exc
    uuids: list[str] = []
    for line in done.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "error":
            raise BackendFailure("CUDA", rest.strip() or "unknown error")
        if word == "uuid":
            uuids.append(rest.strip())
    if done.returncode != 0:
        raise BackendFailure(
            "CUDA", f"helper exited {done.returncode}: {done.stderr.strip()[-200:]}"
        )
    return uuids


def cuda_order(
    gpus: Sequence[NvmlGpu], environ: Mapping[str, str]
) -> tuple[list[NvmlGpu], str, str | None]:
    """Every GPU in CUDA's enumeration order, how it was found, and a note when assumed."""
    by_pci = sorted(gpus, key=_pci_key)
    if environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return by_pci, "PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID)", None
    if len({g.name for g in gpus}) <= 1:
        return by_pci, "fastest first = PCI bus order (identical GPUs)", None
    try:
        listed = _driver_order(environ)
    except BackendFailure as exc:
        note = (
            f"CUDA's fastest-first order unknown ({exc.reason}): PCI bus order assumed, "
            "set CUDA_DEVICE_ORDER=PCI_BUS_ID to make it so"
        )
        return by_pci, "PCI bus order (assumed)", note
    ordered: list[NvmlGpu] = []
    for digits in listed:
        for gpu in gpus:
            hexes = {_hex(gpu.uuid)} if gpu.uuid else set()
            hexes.update(_hex(m.uuid) for m in gpu.mig_devices)
            if digits in hexes and gpu not in ordered:
                ordered.append(gpu)
    # A GPU CUDA did not list (MIG mode, no instances) keeps its PCI place after the rest.
    ordered.extend(g for g in by_pci if g not in ordered)
    return ordered, "fastest first (CUDA driver)", None


_cache_lock = threading.Lock()
_cache: dict[tuple[object, ...], VisibleDevices] = {}


def visible_devices(environ: Mapping[str, str] | None = None) -> VisibleDevices:
    """The devices a CUDA program started with ``environ`` (default: this process's
    environment) sees, by CUDA ordinal. Never raises: without NVML, ``mapped`` is False."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    try:
        generation = nvml.generation()
    except BackendFailure as exc:
        return VisibleDevices((), value, "unknown", mapped=False, reason=f"NVML: {exc.reason}")
    key = (
        os.getpid(),
        generation,
        value,
        env.get("CUDA_DEVICE_ORDER"),
        env.get(CUDA_LIBRARY_ENV),
        env.get(nvml.LIBRARY_ENV),
    )
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        gpus = nvml.inventory()
    except BackendFailure as exc:
        return VisibleDevices((), value, "unknown", mapped=False, reason=f"NVML: {exc.reason}")
    ordered, order, order_note = cuda_order(gpus, env)
    devices, note = resolve(parse_cuda_visible_devices(value), ordered)
    notes = "; ".join(n for n in (note, order_note) if n) or None
    result = VisibleDevices(devices, value, order, notes)
    debug("CUDA", result.describe())
    with _cache_lock:
        _cache[key] = result
    return result


def find_own_mig(environ: Mapping[str, str] | None = None) -> CudaDevice | None:
    """Where a visible MIG device is only CUDA's first of its GPU (``mig_source`` ``first``),
    look for this process on every MIG device by PID; when found, that device replaces it
    under the same CUDA ordinal in ``visible_devices`` from now on. Returns the device found
    (``None``: nothing changed). Cheap to repeat: nothing is asked unless such a device is
    visible."""
    visible = visible_devices(environ)
    first = next((d for d in visible.devices if d.mig_source == "first"), None)
    if first is None:
        return None
    try:
        hit, refused = nvml.find_mig_device_of(os.getpid())
    except BackendFailure as exc:
        debug("CUDA", f"MIG search failed: {exc.reason}")
        return None
    if hit is None:
        if refused:
            debug("CUDA", f"MIG search: not found; refused: {'; '.join(refused)}")
        return None
    gpu, mig = hit
    own = _device(first.cuda_ordinal, gpu, mig, "found")
    devices = tuple(own if d is first else d for d in visible.devices)
    found = VisibleDevices(devices, visible.cuda_visible_devices, visible.order, visible.note)
    debug("CUDA", f"MIG device found by PID: {found.describe()}")
    with _cache_lock:
        for key, cached in list(_cache.items()):
            if cached is visible:
                _cache[key] = found
    return own


def _reset_for_tests() -> None:
    with _cache_lock:
        _cache.clear()
