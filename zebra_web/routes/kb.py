"""The knowledge base's build status, for the page's progress line (issue 16)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from zebra_web.auth import AuthedUser
from zebra_web.context import current_user, get_context
from zebra_web.schemas import ErrorBody

router = APIRouter(prefix="/api", tags=["knowledge base"], responses={401: {"model": ErrorBody}})


class KbStatusResponse(BaseModel):
    """Where the default knowledge base stands (``index_builder.background.KbStatus``); no paths, no process ids."""

    state: str
    ready: bool
    fraction: float
    stage: str
    eta_s: float | None
    message: str


@router.get("/kb", response_model=KbStatusResponse, summary="The knowledge base's build status")
async def kb_status(request: Request, user: AuthedUser = Depends(current_user)) -> KbStatusResponse:
    from index_builder.background import read_status

    status = await run_in_threadpool(read_status, get_context(request).settings)
    return KbStatusResponse(
        state=status.state,
        ready=status.ready,
        fraction=status.fraction,
        stage=status.stage,
        eta_s=status.eta_s,
        message=status.message(),
    )
