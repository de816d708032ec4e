"""What every converter shares: the report it returns, the registry it is listed in, argument checks."""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.errors import UnknownConverterError
from zebra_datasets.nova_write import IMAGE_MODES

#: Examples kept per skip reason in a report.
_MAX_EXAMPLES = 5


@dataclass
class ConvertReport:
    """What a conversion did; printed as JSON by ``zebra data convert``.

    Attributes:
        kind: Converter name.
        source: The source folder (or ``"-"``).
        out: The NOVA data set root written.
        split: The split converted, when the source has splits.
        rows: Rows written.
        cases: Distinct cases written.
        boxes: Boxes written (all sources).
        skipped: Reason to number of source items not converted.
        notes: Reason to number of items converted with a caveat (e.g. a case without its ``Case`` part).
        examples: Reason to a few item names, for skipped items and notes.
        extra: Converter-specific counts (classes, change labels, ...).
    """

    kind: str
    source: str
    out: str
    split: str | None = None
    rows: int = 0
    cases: int = 0
    boxes: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str, item: str) -> None:
        """Counts a source item left out, keeping a few examples."""
        self.skipped[reason] += 1
        self._example(reason, item)

    def note(self, reason: str, item: str) -> None:
        """Counts an item converted with a caveat."""
        self.notes[reason] += 1
        self._example(reason, item)

    def _example(self, reason: str, item: str) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < _MAX_EXAMPLES:
            bucket.append(item)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "kind": self.kind,
            "source": self.source,
            "out": self.out,
            "split": self.split,
            "rows": self.rows,
            "cases": self.cases,
            "boxes": self.boxes,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": sum(self.skipped.values()),
            "notes": dict(sorted(self.notes.items())),
            "examples": self.examples,
            **self.extra,
        }


#: ``converter(src, out, *, split, images, limit, progress, **options) -> ConvertReport``.
ConverterFunc = Callable[..., ConvertReport]


@dataclass(frozen=True)
class ConverterInfo:
    """A registered converter.

    Attributes:
        name: The KIND of ``zebra data convert KIND``.
        func: The converter.
        help: One line for listings.
        splits: Accepted ``--split`` values (empty: the converter discovers them).
        default_split: Used when no split is given.
        needs_source: Whether SRC must be an existing folder.
    """

    name: str
    func: ConverterFunc
    help: str
    splits: tuple[str, ...] = ()
    default_split: str | None = None
    needs_source: bool = True


class ConverterRegistry(Mapping[str, ConverterInfo]):
    """Converter name to :class:`ConverterInfo`, with "did you mean" errors."""

    def __init__(self) -> None:
        self._items: dict[str, ConverterInfo] = {}

    def register(
        self,
        name: str,
        help: str = "",
        *,
        splits: tuple[str, ...] = (),
        default_split: str | None = None,
        needs_source: bool = True,
    ) -> Callable[[ConverterFunc], ConverterFunc]:
        """Decorator adding a converter under ``name``."""

        def deco(func: ConverterFunc) -> ConverterFunc:
            key = name.lower()
            if key in self._items:
                raise ValueError(f"converter {name!r} registered twice")
            doc = (func.__doc__ or "").strip().splitlines()
            self._items[key] = ConverterInfo(
                key, func, help or (doc[0] if doc else ""), splits, default_split, needs_source
            )
            return func

        return deco

    def get_or_raise(self, name: str) -> ConverterInfo:
        """The converter called ``name``.

        Raises:
            UnknownConverterError: Listing the available kinds, with a did-you-mean.
        """
        key = (name or "").strip().lower()
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, list(self._items), n=1)
        did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownConverterError(
            f"Unknown data set kind {name!r}.{did_you_mean}",
            hint=f"Available kinds: {', '.join(sorted(self._items)) or '(none)'}.",
        )

    def __getitem__(self, name: str) -> ConverterInfo:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)


#: Every converter, by name. Filled by the modules of :mod:`zebra_datasets.convert`.
CONVERTERS = ConverterRegistry()


def check_images_mode(images: str) -> str:
    """Validates ``--images``.

    Raises:
        ConfigError: On anything but ``copy`` or ``link``.
    """
    if images not in IMAGE_MODES or images == "keep":
        raise ConfigError(f"Unknown --images mode {images!r}.", hint="Use 'copy' (default) or 'link'.")
    return images


def check_split(split: str | None, allowed: tuple[str, ...], default: str) -> str:
    """Validates ``--split`` against ``allowed`` (plus ``all``).

    Raises:
        ConfigError: On an unknown split, listing the known ones.
    """
    chosen = (split or default).strip().lower()
    if chosen != "all" and chosen not in allowed:
        close = difflib.get_close_matches(chosen, [*allowed, "all"], n=1)
        did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown split {split!r}.{did_you_mean}", hint=f"Use one of {', '.join([*allowed, 'all'])}."
        )
    return chosen


def check_source_dir(src: str | os.PathLike[str], *, what: str) -> Path:
    """Returns ``src`` as a folder path.

    Raises:
        DatasetError: When it is not a folder.
    """
    path = Path(src).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{what} folder {path} does not exist.", hint=f"Pass the {what} folder as SRC.")
    return path


def check_out_dir(out: str | os.PathLike[str], src: Path | None) -> Path:
    """Refuses to write into the source data set, which must stay untouched.

    Raises:
        ConfigError: When OUT is SRC or lies inside it.
    """
    out_path = Path(out).expanduser()
    if src is not None:
        out_abs, src_abs = out_path.resolve(), src.resolve()
        if out_abs == src_abs or src_abs in out_abs.parents:
            raise ConfigError(
                f"Output folder {out_path} is inside the source {src}.",
                hint="Write the NOVA copy to a different folder (e.g. under /tmp).",
            )
    return out_path
