"""Chat sessions and the question -> answer pipeline around the agent adapter."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select

import store
from store.repo import record_audit
from zebra_web.agent_adapter import AgentImage, AgentRequest, pick_indices, present_answer
from zebra_web.context import AppContext
from zebra_web.errors import BadRequestError
from zebra_web.studies import load_display, owned_chat, owned_study, study_images

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
MAX_HISTORY_CHARS = 4000
TITLE_CHARS = 80


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _session_summary(row: store.ChatSession, n_messages: int | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "title": row.title,
        "study_id": row.study_id,
        "prior_study_id": row.prior_study_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }
    if n_messages is not None:
        out["n_messages"] = n_messages
    return out


def create_session(
    ctx: AppContext, user_id: int, *, title: str | None, study_id: int | None, prior_study_id: int | None
) -> dict[str, Any]:
    """Creates a chat session of ``user_id`` about its own studies.

    Raises:
        ResourceNotFoundError: When a study is not the user's.
    """
    with ctx.store.session(immediate=True) as s:
        for sid in (study_id, prior_study_id):
            if sid is not None:
                owned_study(s, sid, user_id)
        row = store.ChatSession(
            user_id=user_id,
            title=(title or "").strip()[:TITLE_CHARS] or None,
            study_id=study_id,
            prior_study_id=prior_study_id,
        )
        s.add(row)
        s.flush()
        return _session_summary(row, 0)


def update_session(ctx: AppContext, user_id: int, session_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Changes the title or the studies of a session (keys present in ``changes`` only)."""
    with ctx.store.session(immediate=True) as s:
        row = owned_chat(s, session_id, user_id)
        for key in ("study_id", "prior_study_id"):
            if key in changes:
                if changes[key] is not None:
                    owned_study(s, int(changes[key]), user_id)
                setattr(row, key, changes[key])
        if "title" in changes:
            row.title = (changes["title"] or "").strip()[:TITLE_CHARS] or None
        s.flush()
        return _session_summary(row)


def list_sessions(ctx: AppContext, user_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The user's sessions, most recently active first."""
    with ctx.store.session() as s:
        counts = (
            select(store.ChatMessage.session_id, func.count().label("n"))
            .group_by(store.ChatMessage.session_id)
            .subquery()
        )
        rows = s.execute(
            select(store.ChatSession, counts.c.n)
            .outerjoin(counts, counts.c.session_id == store.ChatSession.id)
            .where(store.ChatSession.user_id == user_id)
            .order_by(store.ChatSession.updated_at.desc(), store.ChatSession.created_at.desc())
            .limit(limit)
        ).all()
        return [_session_summary(row, int(n or 0)) for row, n in rows]


def get_session(ctx: AppContext, user_id: int, session_id: str) -> dict[str, Any]:
    """A session with its messages."""
    with ctx.store.session() as s:
        row = owned_chat(s, session_id, user_id)
        out = _session_summary(row, len(row.messages))
        out["messages"] = [
            {
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "payload": m.payload,
                "created_at": _iso(m.created_at),
            }
            for m in row.messages
        ]
        return out


def delete_session(ctx: AppContext, user_id: int, session_id: str) -> None:
    """Deletes a session and its messages (the studies stay)."""
    with ctx.store.session(immediate=True) as s:
        s.delete(owned_chat(s, session_id, user_id))
        record_audit(s, "chat.delete", user_id=user_id, target_type="chat_session", target_id=session_id)


def _agent_images(ctx: AppContext, s: Any, study_id: int, focus: int | None) -> list[AgentImage]:
    images = study_images(s, study_id)
    study_uid = s.get(store.Study, study_id).study_uid
    out = []
    for n in pick_indices(len(images), focus, ctx.images_per_question):
        out.append(
            AgentImage(
                study_id=study_id,
                n=n,
                pixels=load_display(ctx.data_dir, images[n]),
                name=f"study-{study_id}-image-{n}",
                study_uid=study_uid,
            )
        )
    return out


def prepare_question(
    ctx: AppContext,
    user_id: int,
    session_id: str,
    question: str,
    *,
    image_index: int | None = None,
    history: str | None = None,
    study_id: int | None = None,
    prior_study_id: int | None = None,
) -> AgentRequest:
    """Checks the question, stores it as a user message and gathers the images for the agent.

    ``study_id`` / ``prior_study_id`` (the studies the question is about) link the session to them first, so
    this and later questions use them; without them the session's own links apply.

    Raises:
        BadRequestError: Empty or too long question or history.
        ResourceNotFoundError: The session or a given study is not the user's.
    """
    question = (question or "").strip()
    if not question:
        raise BadRequestError("The question is empty.", hint="Type a question about the study.")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequestError(
            "The question is too long.", hint=f"Keep it under {MAX_QUESTION_CHARS} characters."
        )
    if history is not None and len(history) > MAX_HISTORY_CHARS:
        raise BadRequestError("The clinical history is too long.", hint=f"Keep it under {MAX_HISTORY_CHARS}.")
    with ctx.store.session(immediate=True) as s:
        chat = owned_chat(s, session_id, user_id)
        if study_id is not None:
            chat.study_id = owned_study(s, study_id, user_id).id
        if prior_study_id is not None:
            chat.prior_study_id = owned_study(s, prior_study_id, user_id).id
        if chat.title is None:
            chat.title = question[:TITLE_CHARS]
        s.add(
            store.ChatMessage(
                session_id=chat.id,
                role=store.ChatRole.USER.value,
                content=question,
                payload={"image_index": image_index, "history": bool(history)},
            )
        )
        chat.updated_at = store.utcnow()
        study_id, prior_id = chat.study_id, chat.prior_study_id
    # Reading images happens outside the write transaction (SQLite has one writer at a time).
    with ctx.store.session() as s:
        images = _agent_images(ctx, s, study_id, image_index) if study_id else []
        priors = []
        if prior_id:
            n_prior = len(study_images(s, prior_id))
            # The prior slice at the same relative position as the one on screen.
            focus = None
            if images and n_prior:
                n_cur = max(1, len(study_images(s, study_id)))
                focus = min(n_prior - 1, round(images[0].n * n_prior / n_cur))
            priors = _agent_images(ctx, s, prior_id, focus)[: len(images) or 1]
    return AgentRequest(
        question=question, images=images, priors=priors, history=(history or None), thread_id=session_id
    )


def answer_question(
    ctx: AppContext, user_id: int, session_id: str, request: AgentRequest, on_event: Any
) -> dict:
    """Asks the agent (blocking), stores the answer as an assistant message and audits the question.

    Returns:
        ``{"message_id", "session_id", "answer"}`` with the presented answer.
    """
    raw = ctx.agent.ask(request, on_event)
    answer = present_answer(raw, overlays=ctx.overlays)
    with ctx.store.session(immediate=True) as s:
        chat = owned_chat(s, session_id, user_id)
        message = store.ChatMessage(
            session_id=chat.id, role=store.ChatRole.ASSISTANT.value, content=answer["text"], payload=answer
        )
        s.add(message)
        chat.updated_at = store.utcnow()
        s.flush()
        # No question text in the audit trail: it may describe the patient.
        record_audit(
            s,
            "chat.question",
            user_id=user_id,
            target_type="chat_session",
            target_id=session_id,
            details={
                "message_id": message.id,
                "images": len(request.images),
                "priors": len(request.priors),
                "abstained": answer["abstained"],
                "seconds": answer.get("timings", {}).get("total"),
            },
        )
        return {"message_id": message.id, "session_id": session_id, "answer": answer}
