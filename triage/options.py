"""How a triage runs (:class:`TriageOptions`) and its progress bar: shared by the local and the Ray engine."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from zebra.errors import ConfigError

ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass
class TriageOptions:
    """How a triage runs.

    Attributes:
        workers: Worker processes (local) or tasks (Ray). With 1 local worker the work runs in this process.
        engine: ``local`` or ``ray``.
        lease_s: Lease length (seconds); a lost worker's item is re-claimable after it.
        max_attempts: Attempts per item before a transient failure is final.
        poll_s: Progress refresh and idle-worker wait (seconds).
        progress: Show a progress bar (stderr) with rate and time left.
        kind: Worklist kind (``auto``, ``csv``, ``dicom``, ``nova``).
        ray_address: Ray cluster address (``None``: start a local Ray).
        ray_num_cpus: CPUs of a local Ray (``None``: Ray's default).
        weights: Priority weights (``None``: defaults).
        threads: Torch / FAISS threads per worker (``None``: 1). The agent's models are small: one thread per
            worker, and one worker per free core, is fastest; on a shared machine two threads per worker
            were 5-8x slower than one (threads contending for busy cores), see docs/triage.md.
    """

    workers: int = 1
    engine: str = "local"
    lease_s: float = 600.0
    max_attempts: int = 3
    poll_s: float = 0.5
    progress: bool = True
    kind: str = "auto"
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    weights: dict[str, float] | None = None
    threads: int | None = None
    write_back: bool | None = None

    def validate(self) -> TriageOptions:
        """Checks ranges.

        Raises:
            ConfigError: For an out-of-range option.
        """
        if self.engine not in ENGINES:
            raise ConfigError(f"Unknown engine {self.engine!r}.", hint="Use --engine local or --engine ray.")
        if not 1 <= int(self.workers) <= 256:
            raise ConfigError(f"--workers must be between 1 and 256, got {self.workers}.", hint="Use e.g. 2.")
        if float(self.lease_s) < 1:
            raise ConfigError("The lease must last at least 1 second.", hint="Use e.g. --lease-seconds 600.")
        if int(self.max_attempts) < 1:
            raise ConfigError("--max-attempts must be at least 1.", hint="Use e.g. 3.")
        if self.threads is not None and int(self.threads) < 1:
            raise ConfigError("threads must be at least 1.", hint="Leave it unset to divide the CPUs.")
        return self

    def worker_threads(self) -> int:
        """Threads each worker uses (see ``threads``)."""
        return 1 if self.threads is None else int(self.threads)


def finished_count(counts: dict[str, int]) -> int:
    """Items done or failed for good."""
    return counts.get("done", 0) + counts.get("error", 0)


def has_unfinished(counts: dict[str, int]) -> bool:
    """Whether any item is still pending or leased."""
    return counts.get("pending", 0) + counts.get("leased", 0) > 0


class Progress:
    """A tqdm bar on stderr (rate and time left) fed from the store's counts; silent when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="study",
            desc="triage",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def set(self, counts: dict[str, int]) -> None:
        """Moves the bar to ``counts``' finished items and shows the error count."""
        delta = finished_count(counts) - self.bar.n
        if delta > 0:
            self.bar.update(delta)
        if counts.get("error"):
            self.bar.set_postfix(errors=counts["error"], refresh=False)

    def close(self) -> None:
        """Closes the bar."""
        self.bar.close()
