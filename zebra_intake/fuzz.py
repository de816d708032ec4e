"""A mutation fuzzer for :func:`zebra_intake.load_study`.

Cases are generated from seed files (every file bundled with pydicom and pydicom-data, plus a NIfTI, a PNG,
a JPEG and a zip that the fuzzer makes itself) by seeded mutations (see :mod:`zebra_intake.mutate`), so a
case is fully identified by (fuzz seed, case index). Each case runs in a worker process with a per-case
timeout; a worker that hangs or dies is replaced. Outcomes:

* ``ok``: a study was returned;
* ``error``: a typed :class:`~zebra.errors.ZebraError` (the intended failure mode);
* ``crash``: any other exception, or the worker died (e.g. a segfault or a memory blow-up);
* ``hang``: the case used more than the timeout of CPU time (or 5x of wall time while blocked), twice: a
  case that times out once is retried alone in a fresh worker, so a busy machine does not produce false
  hangs.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import multiprocessing as mp
import os
import random
import tempfile
import time
import traceback
import zipfile
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Address-space limit of a fuzz worker: a case that needs more is a missing guard (reported as a crash).
WORKER_MEMORY_BYTES = 3 << 30
#: Salt used by the fuzzer (pseudonyms are irrelevant here; a fixed salt keeps runs reproducible).
FUZZ_SALT = b"zebra-fuzz-salt-not-secret-00000"


@dataclass
class CaseResult:
    """The outcome of one fuzz case."""

    index: int
    seed_file: str
    outcome: str
    exception: str = ""
    where: str = ""
    message: str = ""
    mutations: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- seeds ---------------------------------------------------------------------------------------------


def _nifti_bytes() -> bytes:
    import nibabel as nib
    import numpy as np

    volume = np.zeros((12, 10, 8), dtype=np.int16)
    volume[3:9, 2:8, 2:6] = np.arange(6 * 6 * 4, dtype=np.int16).reshape(6, 6, 4)
    affine = np.array([[-2.0, 0, 0, 10], [0, 0, 1.5, -5], [0, 2.5, 0, 3], [0, 0, 0, 1]])
    return nib.Nifti1Image(volume, affine).to_bytes()


def _png_bytes() -> bytes:
    import numpy as np
    from PIL import Image

    gradient = (np.add.outer(np.arange(24), np.arange(32)) * 4 % 256).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(gradient, mode="L").save(out, format="PNG")
    return out.getvalue()


def _jpeg_bytes() -> bytes:
    import numpy as np
    from PIL import Image

    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(24, dtype=np.uint8) * 10
    rgb[..., 2] = 200
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def _zip_bytes(members: list[Path]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in members:
            info = zipfile.ZipInfo(f"series/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out.getvalue()


def build_seeds(workdir: Path) -> list[Path]:
    """Seed files: pydicom's and pydicom-data's test files (sorted) plus generated ones in ``workdir``."""
    from pydicom.data import get_testdata_files

    seeds = sorted({Path(p) for p in get_testdata_files() if Path(p).is_file()}, key=str)
    generated = {
        "fuzz_volume.nii": _nifti_bytes(),
        "fuzz_volume.nii.gz": gzip.compress(_nifti_bytes(), mtime=0),
        "fuzz_gradient.png": _png_bytes(),
        "fuzz_colour.jpg": _jpeg_bytes(),
    }
    small = [p for p in seeds if p.name in ("MR_small.dcm", "CT_small.dcm")]
    if small:
        generated["fuzz_series.zip"] = _zip_bytes(small)
    for name, data in generated.items():
        path = workdir / name
        path.write_bytes(data)
        seeds.append(path)
    return seeds


def make_case(
    seeds: list[Path], seed: int, index: int, cache: dict[Path, bytes] | None = None
) -> tuple[Path, bytes, list[str]]:
    """The (seed file, mutated bytes, mutation notes) of case ``index`` of fuzz run ``seed``."""
    from zebra_intake.mutate import mutate

    rng = random.Random(f"zebra-fuzz:{seed}:{index}")
    source = seeds[rng.randrange(len(seeds))]
    if cache is not None and source in cache:
        data = cache[source]
    else:
        data = source.read_bytes()
        if cache is not None:
            cache[source] = data
    mutated, notes = mutate(data, rng)
    return source, mutated, notes


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix


# -- worker --------------------------------------------------------------------------------------------


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    ours = [f for f in frames if "/zebra/" in f.filename]
    origin = ours[-1] if ours else last
    return f"{Path(last.filename).name}:{last.lineno} in {last.name} (via {Path(origin.filename).name}:{origin.lineno})"


def run_case(path: Path, settings: Any) -> tuple[str, str, str, str]:
    """Runs ``load_study`` on one file; returns (outcome, exception type, where, message)."""
    from zebra.errors import ZebraError
    from zebra_intake.loader import load_study

    try:
        load_study(path, settings=settings, salt=FUZZ_SALT)
    except ZebraError as exc:
        return "error", type(exc).__name__, "", ""
    except Exception as exc:  # the fuzzer's job: anything untyped is a finding
        return "crash", type(exc).__name__, _where(exc), str(exc)[:200]
    return "ok", "", "", ""


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (0 where /proc is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker(conn: Connection, seeds: list[Path], seed: int, workdir: str, settings: Any) -> None:
    try:
        import resource

        # The budget comes on top of what the forked worker already maps (a parent that imported torch maps
        # gigabytes of address space), so the limit catches runaway allocations, not the inherited libraries.
        limit = _mapped_bytes() + WORKER_MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    logging.disable(logging.CRITICAL)  # thousands of cases; results travel over the pipe
    cache: dict[Path, bytes] = {}
    case_dir = Path(tempfile.mkdtemp(prefix=f"w{os.getpid()}-", dir=workdir))
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is None:
            return
        for index in batch:
            source, data, notes = make_case(seeds, seed, index, cache)
            path = case_dir / f"case{_suffix(source)}"
            path.write_bytes(data)
            started = time.perf_counter()
            try:
                outcome, exc_type, where, message = run_case(path, settings)
            except MemoryError:
                outcome, exc_type, where, message = "crash", "MemoryError", "", ""
            elapsed = time.perf_counter() - started
            conn.send((index, source.name, outcome, exc_type, where, message, notes, elapsed))


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux ``/proc``), or ``None`` when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _Slot:
    """One worker process and the batch it is working on."""

    def __init__(self, ctx: Any, seeds: list[Path], seed: int, workdir: str, settings: Any) -> None:
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seeds, seed, workdir, settings), daemon=True)
        self.proc.start()
        child.close()
        self.conn: Connection = parent
        self.batch: deque[int] = deque()
        self.since = time.monotonic()
        self.cpu_since = 0.0
        self.retry = False

    def mark(self) -> None:
        """Starts the clocks of the next case."""
        self.since = time.monotonic()
        self.cpu_since = _cpu_seconds(self.proc.pid) or 0.0

    def overdue(self, timeout_s: float) -> bool:
        """Whether the current case ran too long.

        The limit is on the worker's CPU time where ``/proc`` tells it, so that a busy machine does not
        turn slow cases into hangs; a case that uses no CPU (blocked) is still stopped after 5x the
        limit of wall time.
        """
        wall = time.monotonic() - self.since
        if wall <= timeout_s:
            return False
        cpu = _cpu_seconds(self.proc.pid)
        if cpu is None:
            return True
        return cpu - self.cpu_since > timeout_s or wall > 5 * timeout_s

    def send(self, batch: list[int], *, retry: bool = False) -> None:
        self.batch = deque(batch)
        self.retry = retry
        self.mark()
        self.conn.send(batch)

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


def run_fuzz(
    cases: int = 10_000,
    *,
    seed: int = 0,
    workers: int = 2,
    timeout_s: float = 2.0,
    batch_size: int = 25,
    max_report: int = 20,
    settings: Any = None,
) -> dict[str, Any]:
    """Runs the fuzzer and returns a JSON-ready summary.

    Args:
        cases: Number of cases.
        seed: Fuzz seed; (seed, case index) reproduces a case (see :func:`make_case`).
        workers: Worker processes.
        timeout_s: Per-case time limit; a case over it twice is a hang.
        batch_size: Cases sent to a worker at once.
        max_report: Crashes and hangs listed in full (all are counted).
        settings: :class:`~zebra.config.IntakeSettings`; the defaults when ``None``.

    Returns:
        Counts per outcome, typed errors per class, the first crashes and hangs with reproducer info
        (seed file, case index, exception type, location, mutations), and the run time.
    """
    from zebra.config import IntakeSettings
    from zebra_intake import loader  # noqa: F401  (imported before forking, so workers start warm)

    settings = settings or IntakeSettings()
    started = time.perf_counter()
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    results: dict[int, CaseResult] = {}
    retried: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="zebra-fuzz-") as workdir:
        seeds = build_seeds(Path(workdir))
        pending: deque[int] = deque(range(cases))
        retry_queue: deque[int] = deque()
        slots = [_Slot(ctx, seeds, seed, workdir, settings) for _ in range(max(1, workers))]
        try:
            while len(results) < cases:
                for slot in slots:
                    if slot.batch:
                        continue
                    if retry_queue:
                        slot.send([retry_queue.popleft()], retry=True)
                    elif pending:
                        slot.send([pending.popleft() for _ in range(min(batch_size, len(pending)))])
                busy = [s for s in slots if s.batch]
                if not busy:
                    break
                ready = wait([s.conn for s in busy], timeout=0.05)
                for slot in busy:
                    if slot.conn in ready:
                        try:
                            index, name, outcome, exc_type, where, message, notes, elapsed = slot.conn.recv()
                        except (EOFError, OSError):
                            _died(slot, slots, results, seeds, seed, ctx, workdir, settings, pending)
                            continue
                        results[index] = CaseResult(
                            index, name, outcome, exc_type, where, message, notes, elapsed
                        )
                        if slot.batch and slot.batch[0] == index:
                            slot.batch.popleft()
                        slot.mark()
                    elif slot.overdue(timeout_s):
                        index = slot.batch.popleft()
                        rest = list(slot.batch)
                        _replace(slot, slots, ctx, seeds, seed, workdir, settings)
                        pending.extendleft(reversed(rest))
                        if index in retried:
                            source, _, notes = make_case(seeds, seed, index)
                            results[index] = CaseResult(
                                index,
                                source.name,
                                "hang",
                                "Timeout",
                                "",
                                f"> {timeout_s} s twice",
                                notes,
                                timeout_s,
                            )
                        else:
                            retried.add(index)
                            retry_queue.append(index)
        finally:
            for slot in slots:
                slot.stop()
    elapsed = time.perf_counter() - started
    return _summary(results, cases, seed, workers, timeout_s, elapsed, len(retried), max_report, len(seeds))


def _replace(
    slot: _Slot, slots: list[_Slot], ctx: Any, seeds: list[Path], seed: int, workdir: str, settings: Any
) -> _Slot:
    slot.stop(kill=True)
    fresh = _Slot(ctx, seeds, seed, workdir, settings)
    slots[slots.index(slot)] = fresh
    return fresh


def _died(
    slot: _Slot,
    slots: list[_Slot],
    results: dict[int, CaseResult],
    seeds: list[Path],
    seed: int,
    ctx: Any,
    workdir: str,
    settings: Any,
    pending: deque[int],
) -> None:
    """A worker exited mid-batch: its current case is a crash, the rest of the batch is re-queued."""
    slot.proc.join(timeout=5)
    code = slot.proc.exitcode
    if slot.batch:
        index = slot.batch.popleft()
        source, _, notes = make_case(seeds, seed, index)
        results[index] = CaseResult(index, source.name, "crash", "WorkerDied", "", f"exit code {code}", notes)
        pending.extendleft(reversed(list(slot.batch)))
    _replace(slot, slots, ctx, seeds, seed, workdir, settings)


def _summary(
    results: dict[int, CaseResult],
    cases: int,
    seed: int,
    workers: int,
    timeout_s: float,
    elapsed: float,
    retried: int,
    max_report: int,
    n_seeds: int,
) -> dict[str, Any]:
    counts = Counter(r.outcome for r in results.values())
    errors = Counter(r.exception for r in results.values() if r.outcome == "error")
    ordered = [results[i] for i in sorted(results)]

    def report(kind: str) -> list[dict[str, Any]]:
        return [
            {
                "case": r.index,
                "seed_file": r.seed_file,
                "exception": r.exception,
                "where": r.where,
                "message": r.message,
                "mutations": r.mutations,
            }
            for r in ordered
            if r.outcome == kind
        ][:max_report]

    return {
        "cases": cases,
        "seed": seed,
        "workers": workers,
        "timeout_s": timeout_s,
        "seed_files": n_seeds,
        "seconds": round(elapsed, 2),
        "cases_per_second": round(len(results) / elapsed, 1) if elapsed > 0 else None,
        "counts": {k: counts.get(k, 0) for k in ("ok", "error", "crash", "hang")},
        "errors_by_type": dict(sorted(errors.items())),
        "timeouts_retried": retried,
        "slowest_case_s": round(max((r.seconds for r in ordered), default=0.0), 3),
        "crashes": report("crash"),
        "hangs": report("hang"),
    }


def reproduce(index: int, seed: int = 0, settings: Any = None) -> dict[str, Any]:
    """Re-runs one case in this process and returns its outcome (with a full traceback on a crash)."""
    from zebra.config import IntakeSettings

    settings = settings or IntakeSettings()
    with tempfile.TemporaryDirectory(prefix="zebra-fuzz-") as workdir:
        seeds = build_seeds(Path(workdir))
        source, data, notes = make_case(seeds, seed, index)
        path = Path(workdir) / f"case{_suffix(source)}"
        path.write_bytes(data)
        from zebra.errors import ZebraError
        from zebra_intake.loader import load_study

        try:
            load_study(path, settings=settings, salt=FUZZ_SALT)
            outcome, detail = "ok", ""
        except ZebraError as exc:
            outcome, detail = "error", f"{type(exc).__name__}: {exc.message}"
        except Exception:  # report, don't hide: this is a debugging aid
            outcome, detail = "crash", traceback.format_exc()
    return {
        "case": index,
        "seed": seed,
        "seed_file": source.name,
        "mutations": notes,
        "outcome": outcome,
        "detail": detail,
    }
