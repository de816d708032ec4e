"""``load_study``: one entry point for every medical-image input Zebra accepts.

Dispatch is by content, not by name: a DICOM file (with or without the 128-byte preamble), a DICOMDIR, a
folder (a DICOM series, with or without a DICOMDIR), a ``.zip`` of those, a NIfTI volume
(``.nii``/``.nii.gz``) or a PNG/JPEG picture. DICOM data sets are de-identified right after parsing,
before anything is logged, decoded or returned.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from zebra.config import IntakeSettings
from zebra.errors import (
    ConfigError,
    CorruptFileError,
    IntakeError,
    LimitExceededError,
    NotFoundError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from zebra_intake.archive import extract_zip
from zebra_intake.assemble import Instance, assemble, clean_warnings
from zebra_intake.deid import contains_identifier, deidentify
from zebra_intake.dicom_image import decode_frames
from zebra_intake.dicom_read import DicomHeader, header_int, read_dataset, read_header
from zebra_intake.failures import DICOM_ERRORS, quiet_decoders, translated
from zebra_intake.files import dicomdir_references, find_dicomdir, walk_files
from zebra_intake.guard import Budget
from zebra_intake.nifti import load_nifti
from zebra_intake.raster import load_raster
from zebra_intake.regions import described_region
from zebra_intake.salt import load_or_create_salt
from zebra_intake.sniff import Kind, sniff_path
from zebra_intake.types import Study

log = logging.getLogger(__name__)

#: Errors that abort a multi-file load at once (hostile or oversized input), rather than skip one file.
_FATAL = (UnsafeFileError, LimitExceededError)


class _Context:
    """State of one ``load_study`` call."""

    def __init__(self, settings: IntakeSettings, salt: bytes) -> None:
        self.settings = settings
        self.salt = salt
        self.budget = Budget(settings)
        self.notes = [0]
        self.warnings: list[str] = []
        self.identifiers: list[str] = []


def load_study(
    path: str | Path, *, settings: IntakeSettings | None = None, salt: bytes | None = None
) -> Study:
    """Reads, checks and de-identifies a medical-image input.

    Args:
        path: A DICOM file, a DICOMDIR, a folder, a ``.zip``, a ``.nii``/``.nii.gz`` or a PNG/JPEG.
        settings: Limits; ``get_settings().intake`` when ``None``.
        salt: Secret for pseudonymous UIDs; ``<data_dir>/secret/deid_salt`` (created on first use) when
            ``None``.

    Returns:
        The de-identified study. No original DICOM data set is reachable from it.

    Raises:
        NotFoundError: The path does not exist.
        UnsupportedFormatError: Not a format Zebra reads, or no image in it.
        CorruptFileError: Damaged or truncated content.
        UnsafeFileError: Polyglot preamble, path escape, link out of the folder, decompression bomb.
        LimitExceededError: Over a limit of ``IntakeSettings``.
        MissingCodecError: Compressed pixel data without an installed decoder.
    """
    if settings is None:
        from zebra.config import get_settings

        settings = get_settings().intake
    if salt is None:
        salt = load_or_create_salt()
    if not isinstance(salt, bytes | bytearray) or len(salt) < 16:
        raise ConfigError("The de-identification salt must be at least 16 bytes.", hint="Pass a longer salt.")
    source = Path(path).expanduser()
    if not source.exists():
        raise NotFoundError(f"{source.name or source} does not exist.", hint="Check the path.")
    ctx = _Context(settings, bytes(salt))
    # Decoder warnings and log records may quote header values: none of them may escape intake.
    with quiet_decoders(ctx.notes):
        study = _load_folder(source, ctx) if source.is_dir() else _load_file(source, ctx)
    if ctx.notes[0]:
        study.warnings.append(
            f"{ctx.notes[0]} decoder warning(s) about non-conformant values were silenced (they may quote "
            "header values)."
        )
    study.warnings = clean_warnings(study.warnings, ctx.identifiers)
    log.info(
        "intake: %s study %s, %d series, %d images, %d warnings",
        study.source_kind,
        study.study_uid,
        len(study.series),
        len(study.images),
        len(study.warnings),
    )
    return study


def _load_file(path: Path, ctx: _Context) -> Study:
    kind = sniff_path(path)
    if kind is Kind.DICOM:
        head = read_header(path, ctx.settings, ctx.budget, ctx.notes)
        if head.is_dicomdir:
            return _load_dicom_files(_dicomdir_files(path, head, ctx), ctx)
        return assemble([_instance(head, ctx)], ctx.warnings, ctx.identifiers)
    if kind is Kind.NIFTI:
        return load_nifti(path, ctx.settings, ctx.budget, ctx.salt, ctx.notes)
    if kind in (Kind.PNG, Kind.JPEG):
        return load_raster(path, ctx.settings, ctx.budget, ctx.salt, ctx.notes)
    if kind is Kind.ZIP:
        return _load_zip(path, ctx)
    raise UnsupportedFormatError(
        f"{path.name} is not a format Zebra reads.",
        hint="Pass DICOM (file, folder, DICOMDIR or .zip), NIfTI (.nii, .nii.gz), PNG or JPEG.",
    )


def _load_zip(path: Path, ctx: _Context) -> Study:
    size = path.stat().st_size
    if size > ctx.settings.max_total_bytes:
        raise LimitExceededError(
            f"{path.name} is larger than the {ctx.settings.max_total_bytes >> 20} MiB total limit.",
            hint="Raise intake.max_total_bytes (ZEBRA_INTAKE__MAX_TOTAL_BYTES) if it is trusted.",
        )
    with tempfile.TemporaryDirectory(prefix="zebra-zip-") as tmp:
        root = Path(tmp)
        extract_zip(path, root, ctx.settings)
        return _load_folder(root, ctx, from_zip=True)


def _dicomdir_files(dicomdir: Path, head: DicomHeader, ctx: _Context) -> list[Path]:
    with translated(dicomdir.name, "reading the DICOMDIR records", DICOM_ERRORS):
        files, missing = dicomdir_references(dicomdir, head.header, ctx.settings)
    if missing:
        ctx.warnings.append(f"The DICOMDIR references {missing} file(s) that are missing.")
    if not files:
        raise UnsupportedFormatError(
            "The DICOMDIR references no readable files.", hint="Pass the folder of images instead."
        )
    return files


def _load_folder(root: Path, ctx: _Context, *, from_zip: bool = False) -> Study:
    dicomdir = find_dicomdir(root)
    if dicomdir is not None:
        head = read_header(dicomdir, ctx.settings, ctx.budget, ctx.notes)
        if head.is_dicomdir:
            return _load_dicom_files(_dicomdir_files(dicomdir, head, ctx), ctx)
    dicom: list[Path] = []
    others: list[tuple[Path, Kind]] = []
    for path in walk_files(root, ctx.settings):
        kind = sniff_path(path)
        if kind is Kind.DICOM:
            dicom.append(path)
        elif kind in (Kind.NIFTI, Kind.PNG, Kind.JPEG):
            others.append((path, kind))
    if dicom:
        skipped = sum(1 for _ in others)
        if skipped:
            ctx.warnings.append(f"{skipped} non-DICOM picture(s) next to the DICOM files were ignored.")
        return _load_dicom_files(dicom, ctx)
    if len(others) == 1:
        return _load_file(others[0][0], ctx)
    where = "The zip" if from_zip else "The folder"
    if others:
        raise UnsupportedFormatError(
            f"{where} holds {len(others)} NIfTI/PNG/JPEG files and no DICOM.",
            hint="Load them one at a time.",
        )
    raise UnsupportedFormatError(f"{where} holds no DICOM, NIfTI, PNG or JPEG file.", hint="Check the path.")


def _load_dicom_files(paths: list[Path], ctx: _Context) -> Study:
    instances: list[Instance] = []
    failures: list[IntakeError] = []
    for path in paths:
        try:
            head = read_header(path, ctx.settings, ctx.budget, ctx.notes)
            if head.is_dicomdir:
                continue
            instances.append(_instance(head, ctx))
        except _FATAL:
            raise
        except IntakeError as exc:
            failures.append(exc)
            ctx.warnings.append(f"{path.name}: skipped ({type(exc).__name__}: {exc.message})")
    if not instances:
        if failures:
            raise failures[0]
        raise UnsupportedFormatError("No DICOM image was found.", hint="Check the path.")
    return assemble(instances, ctx.warnings, ctx.identifiers)


def _text(value: object) -> str:
    return str(value).strip() if value is not None else ""


def _instance(head: DicomHeader, ctx: _Context) -> Instance:
    """Parses, de-identifies and decodes one checked DICOM file."""
    ctx.warnings.extend(head.warnings)
    ds = read_dataset(head, ctx.notes)
    # Read before de-identification removes the descriptions; only a word of a closed list is kept.
    region = described_region(ds)
    with translated(head.name, "de-identifying", DICOM_ERRORS):
        result = deidentify(ds, ctx.salt)
    ctx.identifiers.extend(v for v in result.identifiers if v not in ctx.identifiers)
    name = head.name
    if contains_identifier(name, result.identifiers):
        name = f"image-{ctx.budget.files}.dcm"  # the file name itself carried an identifier
    frames, notes = decode_frames(ds, head.transfer_syntax, name, ctx.notes)
    ctx.warnings.extend(notes)
    with translated(name, "reading identifiers for grouping", DICOM_ERRORS):
        study_uid = _text(ds.get("StudyInstanceUID")) or _fallback_uid(ctx, "study", "")
        series_uid = _text(ds.get("SeriesInstanceUID")) or _fallback_uid(ctx, "series", name)
        fields = {
            "modality": _text(ds.get("Modality")).upper()[:16],
            "body_part": _text(ds.get("BodyPartExamined")).upper()[:64],
            "series_description": _text(ds.get("SeriesDescription"))[:128],
            "study_description": _text(ds.get("StudyDescription"))[:128],
        }
        series_number = _optional_int(ds, "SeriesNumber")
        instance_number = _optional_int(ds, "InstanceNumber")
    for key, value in list(fields.items()):
        if contains_identifier(value, result.identifiers):
            fields[key] = ""
    for image, _geometry in frames:
        for key, value in list(image.meta.items()):
            if isinstance(value, str) and contains_identifier(value, result.identifiers):
                image.meta[key] = None
        image.meta["described_region"] = region
    return Instance(
        name=name,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=series_number,
        instance_number=instance_number,
        patient_pseudo_id=result.patient_pseudo_id,
        deid=result.report,
        frames=frames,
        **fields,
    )


def _optional_int(ds: object, keyword: str) -> int | None:
    """An optional integer attribute; a garbage value is treated as absent."""
    try:
        return header_int(ds, keyword)  # type: ignore[arg-type]
    except CorruptFileError:
        return None


def _fallback_uid(ctx: _Context, what: str, name: str) -> str:
    from zebra_intake.deid import pseudo_uid

    ctx.warnings.append(f"A file has no {what} UID; a stand-in was used.")
    return pseudo_uid(f"zebra-missing-{what}:{name}", ctx.salt)
