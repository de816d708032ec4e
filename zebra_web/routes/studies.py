"""Studies: upload, open from PACS, metadata, display images with window/level, overlays, evidence thumbnails."""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from zebra_web.auth import AuthedUser
from zebra_web.context import AppContext, current_user, get_context
from zebra_web.deletion import delete_study, storage_used
from zebra_web.errors import BadRequestError, ConflictError, PayloadTooLargeError, ResourceNotFoundError
from zebra_web.intake_worker import load_study_isolated
from zebra_web.pacs_open import fetch_into, is_configured, parse_reference
from zebra_web.schemas import ErrorBody, PacsOpenRequest, PacsStatus
from zebra_web.studies import (
    ROLES,
    describe_study,
    list_studies,
    owned_chat,
    owned_study,
    render_png,
    store_upload,
    study_images,
)
from zebra_web.uploads import ReceivedUpload, receive_upload

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api", tags=["studies"], responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}}
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "DICOM files of one study, a .zip of a series, a NIfTI, a PNG or a JPEG.",
                        },
                        "role": {"type": "string", "enum": list(ROLES), "default": "current"},
                        "session_id": {"type": "string", "description": "Attach to this chat session."},
                    },
                }
            }
        },
    }
}
_PNG = {"content": {"image/png": {}}, "description": "PNG image"}


def _parse(ctx: AppContext, source: Path, scratch: Path) -> Any:
    return load_study_isolated(
        source, ctx.settings.intake, ctx.salt, timeout_s=ctx.intake_timeout_s, tmp_dir=scratch
    )


@router.post(
    "/studies",
    status_code=201,
    summary="Upload a study",
    description=(
        "Multipart upload of one or many files (or a zip). Size and count limits (`server.max_upload_bytes`, "
        "`server.max_upload_files`) are enforced while the body streams in (413). The files are read and "
        "de-identified in a separate process with a timeout; client file names are never stored. "
        "`role` (current|prior) and `session_id` may be form fields or query parameters. While an upload to a "
        "session is in progress, questions to that session wait for it (give `session_id` as a query parameter "
        "so that this holds from the first byte)."
    ),
    openapi_extra=_UPLOAD_BODY,
    responses={
        400: {"model": ErrorBody},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
async def upload_study(
    request: Request,
    role: str | None = Query(default=None, description="current or prior"),
    session_id: str | None = Query(default=None, description="Chat session to attach the study to."),
    user: AuthedUser = Depends(current_user),
) -> JSONResponse:
    ctx = get_context(request)
    limits = ctx.settings.server
    with ExitStack() as in_progress:
        # One user's uploads and questions in flight are capped (429), before anything is received.
        in_progress.enter_context(ctx.inflight.hold(user.id))
        dest = Path(tempfile.mkdtemp(prefix="up-", dir=ctx.upload_tmp))
        # Questions to the session wait for this upload instead of being answered without it (from the start
        # when session_id is a query parameter, else once the form field has arrived).
        in_progress.enter_context(ctx.pending_uploads.track(user.id, session_id))
        try:
            quota_left = await _quota_left(ctx, user.id)
            files = dest / "files"
            files.mkdir(mode=0o700)
            received = await receive_upload(
                request, files, max_bytes=limits.max_upload_bytes, max_files=limits.max_upload_files
            )
            if quota_left is not None and received.total_bytes > quota_left:
                raise _quota_error(ctx)
            if not session_id and received.fields.get("session_id"):
                session_id = received.fields["session_id"]
                in_progress.enter_context(ctx.pending_uploads.track(user.id, session_id))
            out = await _parse_and_store(ctx, user, received, dest, role, session_id)
        finally:
            await run_in_threadpool(shutil.rmtree, dest, True)
    log.info("upload by user %s: study %s, %d images", user.id, out["id"], out["n_images"])
    return JSONResponse(out, status_code=201)


async def _quota_left(ctx: AppContext, user_id: int) -> int | None:
    """Bytes the user may still store (``None``: no quota).

    Raises:
        PayloadTooLargeError: The quota is used up already (nothing of the upload is read).
    """
    quota = ctx.settings.server.storage_quota_bytes
    if quota <= 0:
        return None
    used = await run_in_threadpool(storage_used, ctx.store, ctx.data_dir, user_id)
    if used >= quota:
        raise _quota_error(ctx)
    return quota - used


def _quota_error(ctx: AppContext) -> PayloadTooLargeError:
    quota_mib = ctx.settings.server.storage_quota_bytes / (1024 * 1024)
    return PayloadTooLargeError(
        f"Your storage quota ({quota_mib:.0f} MiB) would be exceeded by this upload.",
        hint="Delete studies you no longer need, or ask the administrator to raise server.storage_quota_bytes.",
    )


async def _parse_and_store(
    ctx: AppContext,
    user: AuthedUser,
    received: ReceivedUpload,
    dest: Path,
    role: str | None,
    session_id: str | None,
    origin: str = "upload",
) -> dict[str, Any]:
    """De-identifies a received upload in a child process and stores it (linked to ``session_id`` if given).

    ``origin`` (``upload`` or ``pacs``) is recorded in the audit event.
    """
    role = (role or received.fields.get("role") or "current").strip().lower()
    session_id = session_id or None
    if role not in ROLES:
        raise BadRequestError(f"Unknown role {role!r}.", hint="Use role=current or role=prior.")
    source = received.files[0] if len(received.files) == 1 else dest / "files"
    # The parser's temporary files (an unpacked zip: raw, not yet de-identified DICOM) stay inside this
    # upload's own folder, which is removed whatever happens, never in the system temp folder.
    scratch = dest / "tmp"
    scratch.mkdir(mode=0o700, exist_ok=True)
    # Wait for a parser slot on the event loop: a queued upload holds no worker thread (issue 15.5).
    async with ctx.intake_slots.slot():
        study = await anyio.to_thread.run_sync(_parse, ctx, source, scratch)
    return await run_in_threadpool(
        store_upload,
        ctx.store,
        study,
        ctx.data_dir,
        user_id=user.id,
        role=role,
        session_id=session_id,
        n_files=len(received.files),
        n_bytes=received.total_bytes,
        origin=origin,
    )


@router.get(
    "/pacs",
    response_model=PacsStatus,
    summary="Whether studies can be opened from a PACS",
    description="`configured` is true when the administrator set up `[dicomweb]` (docs/pacs.md).",
    tags=["pacs"],
)
async def pacs_status(request: Request, user: AuthedUser = Depends(current_user)) -> PacsStatus:
    return PacsStatus(configured=is_configured(get_context(request).settings))


def _check_session(ctx: AppContext, session_id: str, user_id: int) -> None:
    with ctx.store.session() as s:
        owned_chat(s, session_id, user_id)


@router.post(
    "/studies/pacs",
    status_code=201,
    summary="Open a study from the PACS",
    description=(
        "Fetches one study from the DICOMweb server the administrator configured (never one a user names) by "
        "`accession` number or `study_uid` (exactly one; exact match, no wildcards), then reads, de-identifies "
        "and stores it exactly like an upload: same limits (`server.max_upload_bytes`, `server.max_upload_files`, "
        "the storage quota, uploads and questions in flight), same answer as `POST /api/studies`. `role` "
        "(current|prior) and `session_id` as for uploads. 404: no study matches; 409: several studies have the "
        "accession number, or no PACS is configured (see `GET /api/pacs`); 503: the PACS could not be reached "
        "(details in the server log only)."
    ),
    tags=["pacs"],
    responses={
        400: {"model": ErrorBody},
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def open_from_pacs(
    body: PacsOpenRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> JSONResponse:
    ctx = get_context(request)
    limits = ctx.settings.server
    ref = parse_reference(body.accession, body.study_uid)
    role = (body.role or "current").strip().lower()
    if role not in ROLES:
        raise BadRequestError(f"Unknown role {role!r}.", hint="Use role current or prior.")
    if not is_configured(ctx.settings):
        raise ConflictError(
            "Opening studies from a PACS is not set up on this server.",
            hint="Upload the study instead, or ask the administrator to configure [dicomweb] (docs/pacs.md).",
        )
    session_id = body.session_id or None
    with ExitStack() as in_progress:
        in_progress.enter_context(ctx.inflight.hold(user.id))
        in_progress.enter_context(ctx.pending_uploads.track(user.id, session_id))
        if session_id:  # before the PACS is asked: a wrong session must not cost a fetch
            await run_in_threadpool(_check_session, ctx, session_id, user.id)
        dest = Path(tempfile.mkdtemp(prefix="pacs-", dir=ctx.upload_tmp))
        try:
            quota_left = await _quota_left(ctx, user.id)
            files = dest / "files"
            files.mkdir(mode=0o700)
            # Raw, identifiable instances: only in this request's private folder, removed below whatever happens.
            _, n_bytes = await run_in_threadpool(
                fetch_into,
                ctx.settings,
                ref,
                files,
                max_files=limits.max_upload_files,
                max_bytes=limits.max_upload_bytes,
            )
            if quota_left is not None and n_bytes > quota_left:
                raise _quota_error(ctx)
            received = ReceivedUpload(files=sorted(files.iterdir()), total_bytes=n_bytes)
            out = await _parse_and_store(ctx, user, received, dest, role, session_id, origin="pacs")
        finally:
            await run_in_threadpool(shutil.rmtree, dest, True)
    log.info("opened from PACS by user %s: study %s, %d images", user.id, out["id"], out["n_images"])
    return JSONResponse(out, status_code=201)


def _list(ctx: AppContext, user_id: int) -> list[dict[str, Any]]:
    with ctx.store.session() as s:
        return list_studies(s, user_id)


def _describe(ctx: AppContext, study_id: int, user_id: int) -> dict[str, Any]:
    with ctx.store.session() as s:
        return describe_study(s, owned_study(s, study_id, user_id))


@router.get("/studies", summary="Your studies")
async def get_studies(request: Request, user: AuthedUser = Depends(current_user)) -> list[dict[str, Any]]:
    return await run_in_threadpool(_list, get_context(request), user.id)


@router.delete(
    "/studies/{study_id}",
    status_code=204,
    summary="Delete one of your studies",
    description=(
        "Deletes the study with everything derived from it: its images and pixel files, overlays and heatmaps, "
        "and the chat sessions about it (as current or prior study) with their messages. Cannot be undone."
    ),
)
async def delete_study_route(
    study_id: int, request: Request, user: AuthedUser = Depends(current_user)
) -> Response:
    ctx = get_context(request)
    await run_in_threadpool(
        delete_study, ctx.store, ctx.data_dir, ctx.overlays, study_id, owner_id=user.id, actor_id=user.id
    )
    return Response(status_code=204)


@router.get("/studies/{study_id}", summary="Study metadata (series, images, de-identification record)")
async def get_study(
    study_id: int, request: Request, user: AuthedUser = Depends(current_user)
) -> dict[str, Any]:
    return await run_in_threadpool(_describe, get_context(request), study_id, user.id)


def _image_png(ctx: AppContext, study_id: int, n: int, user_id: int, wc: float | None, ww: float | None):
    with ctx.store.session() as s:
        owned_study(s, study_id, user_id)
        images = study_images(s, study_id)
        if not 0 <= n < len(images):
            raise ResourceNotFoundError(
                f"The study has no image {n}.", hint=f"Images are numbered 0 to {len(images) - 1}."
            )
        image = images[n]
        s.expunge(image)
    return render_png(ctx.data_dir, image, wc, ww)


@router.get(
    "/studies/{study_id}/images/{n}.png",
    summary="Display image n of a study",
    description=(
        "`n` counts images across the study (slices of a volume, instances and frames of a series). Without "
        "`wc`/`ww` the stored display PNG; with them, re-rendered from the stored modality-unit pixels "
        "(Hounsfield units for CT) with that window centre and width."
    ),
    response_class=Response,
    responses={200: _PNG, 400: {"model": ErrorBody}},
)
async def get_image(
    study_id: int,
    n: int,
    request: Request,
    wc: float | None = Query(default=None, description="Window centre"),
    ww: float | None = Query(default=None, description="Window width (> 0)"),
    user: AuthedUser = Depends(current_user),
) -> Response:
    result = await run_in_threadpool(_image_png, get_context(request), study_id, n, user.id, wc, ww)
    headers = {"Cache-Control": "no-store"}
    if isinstance(result, Path):
        return FileResponse(result, media_type="image/png", headers=headers)
    return Response(result, media_type="image/png", headers=headers)


def _overlay(
    ctx: AppContext, study_id: int, n: int, user_id: int
) -> tuple[dict[str, Any] | None, Path | None]:
    with ctx.store.session() as s:
        study_uid = owned_study(s, study_id, user_id).study_uid
    return ctx.overlays.finding(study_uid, n), ctx.overlays.heatmap_path(study_uid, n)


@router.get(
    "/studies/{study_id}/images/{n}/overlays",
    summary="The agent's finding for image n: boxes, anomaly score, caption, heatmap URL",
    description="`available` is false until a question was asked while this image was shown.",
)
async def get_overlays(
    study_id: int, n: int, request: Request, user: AuthedUser = Depends(current_user)
) -> dict[str, Any]:
    finding, heatmap = await run_in_threadpool(_overlay, get_context(request), study_id, n, user.id)
    if finding is None:
        # Not an error: the agent simply has not looked at this image yet.
        return {"available": False, "boxes": [], "heatmap_url": None, "heatmap_kind": None}
    base = f"/api/studies/{study_id}/images/{n}"
    return {**finding, "available": True, "heatmap_url": f"{base}/heatmap.png" if heatmap else None}


@router.get(
    "/studies/{study_id}/images/{n}/heatmap.png",
    summary="Heatmap overlay of image n (RGBA PNG, transparent where the model saw nothing)",
    response_class=Response,
    responses={200: _PNG},
)
async def get_heatmap(
    study_id: int, n: int, request: Request, user: AuthedUser = Depends(current_user)
) -> Response:
    _, heatmap = await run_in_threadpool(_overlay, get_context(request), study_id, n, user.id)
    if heatmap is None:
        raise ResourceNotFoundError(
            "No heatmap for this image yet.", hint="Ask a question about the study while this image is shown."
        )
    return FileResponse(heatmap, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/thumbnails/{name}.png",
    summary="Thumbnail of a similar knowledge-base image cited in an answer",
    response_class=Response,
    responses={200: _PNG},
    tags=["evidence"],
)
async def get_thumbnail(name: str, request: Request, user: AuthedUser = Depends(current_user)) -> Response:
    path = get_context(request).overlays.thumbnail_path(name)
    if path is None:
        raise ResourceNotFoundError(
            "No such thumbnail.", hint="Use the thumbnail_url of an answer's evidence."
        )
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})
