"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``) via nibabel: canonical RAS+, a few axial slices.

Slices are shown in the radiological convention used by DICOM axial images: image rows run from anterior
(top) to posterior, columns from the patient's right (left of the image) to the patient's left. So for
a RAS+ volume ``v[x, y, z]`` of shape (X, Y, Z), the image of slice ``z`` is
``image[r, c] = v[X - 1 - c, Y - 1 - r, z]``.

Header text fields (descrip, aux_file, db_name, intent_name) are never read: they may hold identifiers.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import OrientationError

from zebra.config import IntakeSettings
from zebra.errors import CorruptFileError, LimitExceededError, UnsafeFileError, UnsupportedFormatError
from zebra_intake import display as dsp
from zebra_intake.deid import pseudo_uid
from zebra_intake.failures import NIFTI_ERRORS, quiet_decoders, translated
from zebra_intake.guard import Budget, check_image_geometry, read_bounded
from zebra_intake.types import MedicalImage, Series, Study


def _select_slices(volume: np.ndarray, wanted: int) -> list[int]:
    """At most ``wanted`` axial indices evenly spaced through the non-empty extent of the volume."""
    depth = volume.shape[2]
    background = np.nanmin(volume) if volume.size else 0.0
    occupied = np.flatnonzero(np.any(volume.reshape(-1, depth) > background, axis=0))
    lo, hi = (int(occupied[0]), int(occupied[-1])) if occupied.size else (0, depth - 1)
    count = max(1, min(wanted, hi - lo + 1))
    return sorted({round(float(v)) for v in np.linspace(lo, hi, count)})


def load_nifti(path: Path, settings: IntakeSettings, budget: Budget, salt: bytes, notes: list[int]) -> Study:
    """Reads a NIfTI file into a single-series :class:`Study`.

    Raises:
        LimitExceededError: When the declared volume is over the limits (checked from the header).
        UnsupportedFormatError: For complex, RGB or more than 4-D volumes.
        CorruptFileError: For damaged headers or data.
    """
    name = path.name
    data = read_bounded(path, settings.max_file_bytes)
    budget.add_file(name, len(data))
    warnings: list[str] = []
    with quiet_decoders(notes), translated(name, "reading the NIfTI header", NIFTI_ERRORS):
        image = _from_gzip(data, name, settings) if data.startswith(b"\x1f\x8b") else _parse(data)
        shape = tuple(int(v) for v in image.header.get_data_shape())
        dtype = image.header.get_data_dtype()
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise UnsupportedFormatError(
            f"{name} stores {dtype} voxels; Zebra reads real-valued scalar volumes.",
            hint="Convert the volume to a scalar (grayscale) data type.",
        )
    if len(shape) < 2 or (len(shape) > 4 and any(v > 1 for v in shape[4:])):
        raise UnsupportedFormatError(
            f"{name} has {len(shape)} dimensions; Zebra reads 2-D, 3-D and 4-D volumes.",
            hint="Export a 3-D volume.",
        )
    nx, ny = shape[0], shape[1]
    nz = shape[2] if len(shape) >= 3 else 1
    volumes = shape[3] if len(shape) >= 4 else 1
    check_image_geometry(name, settings, rows=ny, columns=nx, frames=1)
    if nx * ny * nz > settings.max_pixels:
        raise LimitExceededError(
            f"{name} declares {nx * ny * nz} voxels; the limit is {settings.max_pixels}.",
            hint="Raise intake.max_pixels (ZEBRA_INTAKE__MAX_PIXELS) if the volume is trusted.",
        )
    budget.add_pixels(name, nx * ny * nz)
    if volumes > 1:
        warnings.append(f"{name}: 4-D volume with {volumes} volumes; only the first was read.")
    with quiet_decoders(notes), translated(name, "reading the NIfTI voxels", NIFTI_ERRORS):
        raw = np.asanyarray(image.dataobj[..., 0] if len(shape) >= 4 else image.dataobj)
        raw = raw.reshape(nx, ny, nz)
        zooms_in = [abs(float(z)) for z in (*image.header.get_zooms()[:3], 1.0, 1.0, 1.0)[:3]]
        fallback = np.diag([*(z if np.isfinite(z) and z > 0 else 1.0 for z in zooms_in), 1.0])
        affine = image.affine if image.affine is not None else fallback
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            warnings.append(f"{name}: the affine is missing or singular; voxel axes used as-is.")
            affine = fallback
        voxels = np.asarray(raw, dtype=np.float32)
        try:
            volume = nib.as_closest_canonical(nib.Nifti1Image(voxels, affine))
        except OrientationError:
            warnings.append(f"{name}: the affine has no clear orientation; voxel axes used as-is.")
            volume = nib.Nifti1Image(voxels, fallback)
        values = np.asarray(volume.dataobj, dtype=np.float32)
        canonical_affine = volume.affine
        zooms = tuple(float(z) for z in volume.header.get_zooms()[:3])
    values, replaced = dsp.finite_or_zero(values)
    if replaced:
        warnings.append(f"{name}: non-finite voxels were set to 0.")
    indices = _select_slices(values, settings.nifti_slices)
    window = dsp.percentile_window(values)
    images: list[MedicalImage] = []
    for order, k in enumerate(indices):
        plane = values[::-1, ::-1, k].T  # rows: anterior -> posterior, columns: right -> left
        z_world = float((canonical_affine @ np.array([0.0, 0.0, float(k), 1.0]))[2])
        spacing = (zooms[1], zooms[0]) if all(z > 0 for z in zooms[:2]) else None
        images.append(
            MedicalImage(
                pixels=np.ascontiguousarray(plane, dtype=np.float32),
                display=dsp.window_to_uint8(plane, *window),
                frame_index=int(k),
                slice_index=order,
                pixel_spacing=spacing,
                window=window,
                meta={
                    "modality": "",
                    "rows": int(plane.shape[0]),
                    "columns": int(plane.shape[1]),
                    "volume_shape": [int(v) for v in values.shape],
                    "axial_index": int(k),
                    "slice_position": z_world,
                    "orientation": "RAS+ (radiological display)",
                    "voxel_size": list(zooms),
                    "window_source": "percentile",
                    "data_type": str(dtype),
                },
                source_name=name,
            )
        )
    digest = hashlib.sha256(data).hexdigest()
    study_uid = pseudo_uid(f"nifti:{digest}", salt)
    series_uid = pseudo_uid(f"nifti-series:{digest}", salt)
    return Study(
        study_uid=study_uid,
        patient_pseudo_id=None,
        modality="",
        body_part="",
        description="",
        source_kind="nifti",
        series=[Series(series_uid=series_uid, images=images)],
        deid=None,
        warnings=warnings,
    )


def _from_gzip(data: bytes, name: str, settings: IntakeSettings) -> nib.Nifti1Image:
    """Inflates a ``.nii.gz`` with a bound derived from the limits, then parses it."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    limit = settings.max_pixels * 8 + (1 << 20)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise LimitExceededError(
            f"{name} inflates to more than {limit >> 20} MiB.",
            hint="Raise intake.max_pixels (ZEBRA_INTAKE__MAX_PIXELS) if the volume is trusted.",
        )
    if len(out) > settings.max_zip_ratio * max(1, len(data)) and len(out) > (1 << 20):
        raise UnsafeFileError(
            f"{name} inflates {len(out) // max(1, len(data))} times (limit {settings.max_zip_ratio}).",
            hint="This looks like a decompression bomb; raise intake.max_zip_ratio only for trusted files.",
        )
    if not inflater.eof:
        raise CorruptFileError(f"{name} is a truncated gzip stream.", hint="Compress the volume again.")
    return _parse(out)


def _parse(raw: bytes) -> nib.Nifti1Image:
    """NIfTI-2 when the header size says 540 (either byte order), else NIfTI-1."""
    head = raw[:4]
    if head in ((540).to_bytes(4, "little"), (540).to_bytes(4, "big")):
        return nib.Nifti2Image.from_bytes(raw)
    return nib.Nifti1Image.from_bytes(raw)
