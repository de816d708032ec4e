"""From a checked, de-identified DICOM data set to :class:`MedicalImage` objects, one per frame."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, get_decoder
from pydicom.uid import UID, ImplicitVRLittleEndian

from zebra.errors import CorruptFileError
from zebra_intake import display as dsp
from zebra_intake.failures import DICOM_ERRORS, PIXEL_ERRORS, quiet_decoders, translated
from zebra_intake.types import MedicalImage

#: Reading an optional attribute: pydicom converts values lazily, so any parse error may surface here.
_LOOKUP_ERRORS = (*DICOM_ERRORS, AttributeError)


@dataclass
class FrameGeometry:
    """Where a frame sits in the patient (for sorting a series)."""

    orientation: tuple[float, ...] | None = None
    position: tuple[float, ...] | None = None

    def projection(self) -> float | None:
        """Distance along the slice normal (for sorting slices), when both vectors are known."""
        if not self.orientation or not self.position or len(self.orientation) != 6 or len(self.position) != 3:
            return None
        row = np.array(self.orientation[:3])
        col = np.array(self.orientation[3:])
        normal = np.cross(row, col)
        value = float(np.dot(normal, np.array(self.position)))
        return value if np.isfinite(value) else None


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _float(value: Any) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except _LOOKUP_ERRORS:
        return None
    return number if np.isfinite(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        items = (
            list(value)
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        )
        numbers = tuple(float(v) for v in items)
    except _LOOKUP_ERRORS:
        return None
    if len(numbers) != count or not all(np.isfinite(n) for n in numbers):
        return None
    return numbers


def _get(ds: Dataset, keyword: str) -> Any:
    """An attribute value, or ``None`` when absent or unreadable (optional attributes only)."""
    try:
        return ds.get(keyword)
    except _LOOKUP_ERRORS:
        return None


def _functional(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """A per-frame functional group value (enhanced multi-frame), falling back to the shared groups."""
    for container, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        try:
            groups = ds.get(container)
            if not groups or index >= len(groups):
                continue
            inner = groups[index].get(sequence)
            if inner and len(inner) and keyword in inner[0]:
                return inner[0].get(keyword)
        except _LOOKUP_ERRORS:
            continue
    return None


def _frame_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    value = _functional(ds, frame, sequence, keyword)
    return value if value is not None else _get(ds, keyword)


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG (SOFn) or JPEG 2000 (SIZ) codestream header, if found quickly."""
    if frame[:4] == b"\xff\x4f\xff\x51":
        # SOC, SIZ marker, Lsiz(2), Rsiz(2), then Xsiz, Ysiz, XOsiz, YOsiz (4 bytes each).
        if len(frame) < 24:
            return None
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[8:24])
        return (ysiz - yosiz, xsiz - xosiz) if xsiz > xosiz and ysiz > yosiz else None
    if frame[:2] != b"\xff\xd8":
        return None
    pos, limit = 2, min(len(frame), 1 << 16)
    while pos + 4 <= limit:
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", frame[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= limit:
            height, width = struct.unpack(">HH", frame[pos + 5 : pos + 9])
            return (height, width)
        if length < 2:
            return None
        pos += 2 + length
    return None


def _check_compressed_size(ds: Dataset, name: str, rows: int, columns: int) -> None:
    """Refuses encapsulated frames whose codestream declares another (possibly huge) size.

    Decoders allocate from the codestream header, not from Rows/Columns, so this is checked first.
    """
    size = None
    try:
        # The first item is the (possibly empty) Basic Offset Table, the next one starts the first frame.
        for _, fragment in zip(range(2), generate_fragments(ds.PixelData), strict=False):
            size = _jpeg_size(bytes(fragment[: 1 << 16]))
            if size is not None:
                break
    except _LOOKUP_ERRORS:
        return  # the decoder reports a broken encapsulation itself
    if size is not None and size != (rows, columns) and (size[0] > rows or size[1] > columns):
        raise CorruptFileError(
            f"{name}: the compressed frame is {size[0]} x {size[1]} but the header says {rows} x {columns}.",
            hint="The file is damaged or inconsistent; re-export it.",
        )


def _frames(ds: Dataset, ts: UID, count: int) -> Iterator[np.ndarray]:
    """Decoded frames; YBR_FULL colour is converted to RGB here (pydicom's conversion is much slower)."""
    decoder = get_decoder(ts)
    for arr, props in decoder.iter_array(ds, indices=range(count), allow_excess_frames=False, as_rgb=False):
        space = str(props.get("photometric_interpretation", "")).upper()
        if arr.ndim == 3 and arr.shape[-1] == 3 and space in ("YBR_FULL", "YBR_FULL_422"):
            if arr.dtype == np.uint8:
                arr = dsp.ybr_full_to_rgb(arr)
            else:
                arr = convert_color_space(arr, space, "RGB")
        yield arr


def _modality(
    ds: Dataset, arr: np.ndarray, frame: int, notes: list[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored values to modality units: per-frame / top-level rescale, or a Modality LUT."""
    info: dict[str, Any] = {}
    slope = _float(_frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _float(_frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    if slope is None and intercept is None and _get(ds, "ModalityLUTSequence"):
        try:
            out = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
            info["modality_lut"] = True
            return out, info
        except (*_LOOKUP_ERRORS, ZeroDivisionError):
            notes.append("an unreadable Modality LUT was ignored")
    if slope is not None and slope == 0:
        notes.append("a zero Rescale Slope was ignored")
        slope = None
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    info["rescale_slope"] = slope
    info["rescale_intercept"] = intercept
    return arr.astype(np.float64) * slope + intercept, info


def _voi_lut(ds: Dataset, values: np.ndarray) -> np.ndarray | None:
    sequence = _get(ds, "VOILUTSequence")
    if not sequence:
        return None
    try:
        item = sequence[0]
        descriptor = [int(v) for v in item.LUTDescriptor]
        raw = item.LUTData
        if isinstance(raw, bytes | bytearray):
            little = getattr(ds, "original_encoding", (True, True))[1] is not False
            table = np.frombuffer(bytes(raw[: len(raw) // 2 * 2]), dtype="<u2" if little else ">u2")
        else:
            table = np.asarray(list(raw) if not isinstance(raw, int) else [raw], dtype=np.float64)
        return dsp.lut_to_uint8(values, descriptor, table)
    except (*_LOOKUP_ERRORS, IndexError):
        return None


def _gray(
    ds: Dataset, arr: np.ndarray, frame: int, photometric: str, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    values, info = _modality(ds, arr, frame, notes)
    values, replaced = dsp.finite_or_zero(values)
    if replaced:
        notes.append("non-finite pixel values were set to 0")
    center = _float(_frame_value(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _float(_frame_value(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    function = str(_first(_frame_value(ds, frame, "FrameVOILUTSequence", "VOILUTFunction")) or "LINEAR")
    window: tuple[float, float] | None = None
    shown: np.ndarray | None = None
    if dsp.valid_window(center, width, function):
        assert center is not None and width is not None
        window = (center, width)
        shown = dsp.window_to_uint8(values, center, width, function)
        info["window_source"] = "dicom"
        info["voi_lut_function"] = function.upper()
    else:
        shown = _voi_lut(ds, values)
        if shown is not None:
            info["window_source"] = "voi_lut"
        if center is not None or width is not None:
            notes.append("an invalid window center/width was ignored")
    if shown is None:
        window = dsp.percentile_window(values)
        shown = dsp.window_to_uint8(values, *window)
        info["window_source"] = "percentile"
    if photometric == "MONOCHROME1":
        shown = 255 - shown
    return values.astype(np.float32), shown, window, info


def _colour(
    ds: Dataset, arr: np.ndarray, photometric: str, bits_stored: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels: luma in source units, display: luma uint8, rgb uint8) of a colour frame."""
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        mapped = apply_color_lut(arr, ds)
        rgb = mapped if mapped.dtype == np.uint8 else dsp.scale_to_uint8(mapped, 65535.0)
        shown = dsp.luma_uint8(rgb)
        return shown.astype(np.float32), shown, np.ascontiguousarray(rgb)
    if arr.dtype == np.uint8:
        rgb = np.array(arr[..., :3], dtype=np.uint8, copy=True)
        shown = dsp.luma_uint8(rgb)
        return shown.astype(np.float32), shown, rgb
    rgb = dsp.scale_to_uint8(arr[..., :3], float(2 ** max(1, min(bits_stored, 32)) - 1))
    return dsp.luminance(arr), dsp.luma_uint8(rgb), rgb


def _pixel_spacing(ds: Dataset, frame: int) -> tuple[float, float] | None:
    for value in (
        _functional(ds, frame, "PixelMeasuresSequence", "PixelSpacing"),
        _get(ds, "PixelSpacing"),
        _get(ds, "ImagerPixelSpacing"),
    ):
        if value is None:
            continue
        pair = _floats(value, 2)
        if pair is not None and pair[0] > 0 and pair[1] > 0:
            return (pair[0], pair[1])
    return None


def frame_geometry(ds: Dataset, frame: int) -> FrameGeometry:
    """Image orientation/position of a frame (per-frame groups first, then the top level)."""
    orientation = _floats(_frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    position = _floats(_frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
    return FrameGeometry(orientation=orientation, position=position)


def _base_meta(ds: Dataset, ts: UID | None) -> dict[str, Any]:
    """The allow-listed, de-identified attributes shared by every frame of a file."""

    def text(keyword: str) -> str:
        value = _first(_get(ds, keyword))
        return str(value).strip() if value is not None else ""

    def integer(keyword: str) -> int | None:
        number = _float(_get(ds, keyword))
        return int(number) if number is not None else None

    sop = text("SOPClassUID")
    try:
        sop_name = UID(sop).name if sop else ""
    except _LOOKUP_ERRORS:
        sop_name = ""
    return {
        "modality": text("Modality").upper()[:16],
        "sop_class": sop_name if sop_name != sop else "",
        "rows": integer("Rows"),
        "columns": integer("Columns"),
        "number_of_frames": integer("NumberOfFrames") or 1,
        "photometric_interpretation": text("PhotometricInterpretation").upper()[:16],
        "samples_per_pixel": integer("SamplesPerPixel") or 1,
        "bits_allocated": integer("BitsAllocated"),
        "bits_stored": integer("BitsStored"),
        "pixel_representation": integer("PixelRepresentation"),
        "transfer_syntax": str(ts) if ts else str(ImplicitVRLittleEndian),
        "transfer_syntax_name": (ts.name if ts else "Implicit VR Little Endian (assumed)"),
        "body_part": text("BodyPartExamined").upper()[:16],
        "instance_number": integer("InstanceNumber"),
        "slice_thickness": _float(_get(ds, "SliceThickness")),
        "slice_location": _float(_get(ds, "SliceLocation")),
        "lossy_compression": text("LossyImageCompression") == "01",
        "burned_in_annotation": text("BurnedInAnnotation").upper() == "YES",
        "patient_identity_removed": text("PatientIdentityRemoved").upper() == "YES",
    }


def decode_frames(
    ds: Dataset, ts: UID | None, name: str, notes: list[int]
) -> tuple[list[tuple[MedicalImage, FrameGeometry]], list[str]]:
    """Decodes every frame of a checked, de-identified data set.

    Args:
        ds: The data set (header limits already checked by :func:`read_header`).
        ts: Its transfer syntax (``None``: implicit VR little endian assumed).
        name: File name for messages and ``source_name``.
        notes: ``notes[0]`` counts silenced decoder warnings.

    Returns:
        (image, geometry) per frame, and notes for the user (values that were ignored).

    Raises:
        CorruptFileError: When pixel data does not match the header or cannot be decoded.
    """
    ts = ts or ImplicitVRLittleEndian
    messages: list[str] = []
    with translated(name, "reading the image attributes", DICOM_ERRORS):
        rows = int(_float(ds.Rows) or 0)
        columns = int(_float(ds.Columns) or 0)
        count = int(_float(_get(ds, "NumberOfFrames")) or 1)
        samples = int(_float(_get(ds, "SamplesPerPixel")) or 1)
        photometric = str(_first(_get(ds, "PhotometricInterpretation")) or "MONOCHROME2").strip().upper()
        bits_stored = int(_float(_get(ds, "BitsStored")) or _float(_get(ds, "BitsAllocated")) or 8)
        if ts.is_encapsulated and "PixelData" in ds:
            _check_compressed_size(ds, name, rows, columns)
        base = _base_meta(ds, ts)
    results: list[tuple[MedicalImage, FrameGeometry]] = []
    frames = _frames(ds, ts, count)
    expected = (rows, columns) if samples == 1 else (rows, columns, samples)
    for index in range(count):
        # Only the decoder runs under the exception translation: a bug in Zebra's own processing below
        # must surface (and be found by the fuzzer), not be reported as a damaged file.
        with quiet_decoders(notes), translated(name, "decoding pixel data", PIXEL_ERRORS):
            arr = next(frames, None)
        if arr is None:
            break
        colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
        if arr.shape != expected and not (colour and arr.shape[:2] == (rows, columns)):
            raise CorruptFileError(
                f"{name}: frame {index} decoded to shape {arr.shape}, expected {expected}.",
                hint="The file is damaged or inconsistent; re-export it.",
            )
        meta = dict(base)
        rgb: np.ndarray | None = None
        window: tuple[float, float] | None = None
        if colour or photometric == "PALETTE COLOR":
            with translated(name, "applying the colour palette", PIXEL_ERRORS):
                pixels, shown, rgb = _colour(ds, arr, photometric, bits_stored)
            meta["window_source"] = None
        else:
            pixels, shown, window, info = _gray(ds, arr, index, photometric, messages)
            meta.update(info)
        geometry = frame_geometry(ds, index)
        meta["image_orientation"] = list(geometry.orientation) if geometry.orientation else None
        meta["image_position"] = list(geometry.position) if geometry.position else None
        image = MedicalImage(
            pixels=np.ascontiguousarray(pixels, dtype=np.float32),
            display=np.ascontiguousarray(shown, dtype=np.uint8),
            rgb=rgb,
            frame_index=index,
            pixel_spacing=_pixel_spacing(ds, index),
            window=window,
            meta=meta,
            source_name=name,
        )
        results.append((image, geometry))
    if len(results) != count:
        raise CorruptFileError(
            f"{name}: {len(results)} of {count} frames could be decoded.", hint="The file is damaged."
        )
    return results, [f"{name}: {m}" for m in sorted(set(messages))]
