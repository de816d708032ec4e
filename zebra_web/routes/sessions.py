"""Chat sessions and questions; answers stream back as Server-Sent Events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from zebra.errors import ZebraError
from zebra_web.auth import AuthedUser
from zebra_web.chat import (
    answer_question,
    create_session,
    delete_session,
    get_session,
    list_sessions,
    prepare_question,
    update_session,
)
from zebra_web.context import AppContext, current_user, get_context
from zebra_web.errors import StudyNotReadyError, WebError
from zebra_web.redact import mask_secrets
from zebra_web.schemas import ErrorBody, NewSessionRequest, QuestionRequest, UpdateSessionRequest
from zebra_web.sse import sse_comment, sse_event

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api", tags=["sessions"], responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}}
)

#: Seconds between keep-alive comments while the agent thinks.
KEEPALIVE_S = 10.0
#: What a user is told when the agent fails: the details (which may name the reasoner's URL, credentials or
#: the upstream reply) go to the log only.
AGENT_FAILED = {
    "error": "The assistant could not answer this question.",
    "hint": "Try again; if it persists, tell the administrator (details are in the server log).",
}


def user_facing_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` event for a failed question: our own request errors as they are, anything else generic.

    Errors of the web app (bad input, not found, agent unavailable) carry messages written for users here;
    errors from the agent and below may quote internal details (the reasoner's URL with its credentials,
    the upstream reply), so they are logged (secrets masked) and replaced.
    """
    if isinstance(exc, WebError):
        return {"error": exc.message, "hint": exc.hint}
    detail = exc.message if isinstance(exc, ZebraError) else str(exc)
    log.error("the agent failed on a question: %s: %s", type(exc).__name__, mask_secrets(detail))
    return dict(AGENT_FAILED)


async def _prepare(ctx: AppContext, user: AuthedUser, session_id: str, body: QuestionRequest) -> Any:
    """Waits for an upload to the session, then checks and stores the question (before streaming starts)."""
    # An upload to this session still being de-identified: wait for it (on the event loop, no thread held),
    # briefly; never answer without it. Past the wait the question is refused (409) and nothing is stored.
    if not await ctx.pending_uploads.wait(user.id, session_id, ctx.pending_upload_wait_s):
        raise StudyNotReadyError(
            "The image is still being prepared (uploaded and de-identified); the question was not sent.",
            hint="Ask again once the upload has finished.",
        )
    # Validation and the user message happen before streaming starts, so bad input is a plain JSON error.
    return await run_in_threadpool(
        prepare_question,
        ctx,
        user.id,
        session_id,
        body.question,
        image_index=body.image_index,
        history=body.history,
        study_id=body.study_id,
        prior_study_id=body.prior_study_id,
    )


@router.post("/sessions", status_code=201, summary="Start a chat session")
async def post_session(
    body: NewSessionRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> dict[str, Any]:
    return await run_in_threadpool(
        create_session,
        get_context(request),
        user.id,
        title=body.title,
        study_id=body.study_id,
        prior_study_id=body.prior_study_id,
    )


@router.get("/sessions", summary="Your chat sessions, most recent first")
async def get_sessions(request: Request, user: AuthedUser = Depends(current_user)) -> list[dict[str, Any]]:
    return await run_in_threadpool(list_sessions, get_context(request), user.id)


@router.get("/sessions/{session_id}", summary="A chat session with its messages")
async def get_one_session(
    session_id: str, request: Request, user: AuthedUser = Depends(current_user)
) -> dict[str, Any]:
    return await run_in_threadpool(get_session, get_context(request), user.id, session_id)


@router.patch("/sessions/{session_id}", summary="Rename a session or change its studies")
async def patch_session(
    session_id: str, body: UpdateSessionRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    return await run_in_threadpool(update_session, get_context(request), user.id, session_id, changes)


@router.delete("/sessions/{session_id}", status_code=204, summary="Delete a session and its messages")
async def remove_session(
    session_id: str, request: Request, user: AuthedUser = Depends(current_user)
) -> Response:
    await run_in_threadpool(delete_session, get_context(request), user.id, session_id)
    return Response(status_code=204)


@router.post(
    "/sessions/{session_id}/messages",
    summary="Ask a question; the answer streams as Server-Sent Events",
    description=(
        "Events: `status` ({stage}), `delta` ({text}: the answer text as it forms, in order), then exactly one "
        "of `final` ({message_id, session_id, answer}: the structured answer with differential, citations, "
        "evidence (documents, similar images with thumbnail_url, model outputs), findings with heatmap and "
        "overlay URLs, change statement, abstention) or `error` ({error, hint}). Comment lines keep the "
        "connection alive. The answer is stored even if the client disconnects. `study_id` / `prior_study_id` "
        "link the session to those studies (later questions keep using them). While an upload to the session "
        "is still being de-identified the question waits for it, up to a few seconds, then gets 409 with "
        "`Retry-After` (nothing stored): it is never answered without the image."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "An upload to the session is still being de-identified."},
    },
)
async def post_message(
    session_id: str, body: QuestionRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> StreamingResponse:
    ctx = get_context(request)
    # Counted from now until the answer is stored (or fails): one user cannot queue without bound (429).
    ctx.inflight.acquire(user.id)
    try:
        agent_request = await _prepare(ctx, user, session_id, body)
    except BaseException:
        ctx.inflight.release(user.id)
        raise
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    def emit(kind: str, data: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, data))

    async def produce() -> None:
        try:
            # Queued questions wait for the agent here, on the event loop: no worker thread is held while
            # waiting, so sign-in checks and pages stay fast for everyone (issue 15.5).
            async with ctx.agent.slots.slot():
                result = await anyio.to_thread.run_sync(
                    answer_question, ctx, user.id, session_id, agent_request, emit
                )
            events.put_nowait(("final", result))
        except Exception as exc:
            events.put_nowait(("error", user_facing_error(exc)))
        finally:
            ctx.inflight.release(user.id)
            events.put_nowait(None)

    task = asyncio.create_task(produce())
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)

    async def stream() -> AsyncIterator[bytes]:
        yield sse_event("status", {"stage": "queued", "images": len(agent_request.images)})
        while True:
            try:
                item = await asyncio.wait_for(events.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield sse_comment()
                continue
            if item is None:
                return
            yield sse_event(*item)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
