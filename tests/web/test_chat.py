"""Chat sessions, the streamed answer, overlays, evidence thumbnails, isolation and audit."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from sqlalchemy import select

from zebra_web.sse import parse_sse


def _ask(client, session_id: str, question: str = "What is the most likely diagnosis?", **extra):
    with client.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"question": question, **extra}
    ) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = "".join(resp.iter_text())
    return parse_sse(body)


def _study_session(client, web, ct_small=None):
    data = ("a.dcm", ct_small.read_bytes()) if ct_small else ("a.png", web.png_bytes())
    study = web.upload(client, [data]).json()
    session = client.post("/api/sessions", json={"study_id": study["id"]}).json()
    return study, session


def test_stream_yields_chunks_then_final(alice, web, ct_small):
    study, session = _study_session(alice, web, ct_small)
    events = _ask(alice, session["id"], image_index=0)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "final"
    deltas = [d["text"] for k, d in events if k == "delta"]
    assert len(deltas) >= 3  # sentence by sentence
    final = events[-1][1]
    answer = final["answer"]
    assert "".join(deltas) == answer["text"]
    assert answer["differential"][0]["diagnosis"] == "Pilocytic astrocytoma"
    assert abs(sum(d["probability"] for d in answer["differential"]) - 0.93) < 1e-6
    ev = answer["evidence"]
    assert [c["id"] for c in ev["documents"]] == ["E1", "E2"] and ev["documents"][0]["quote"]
    assert ev["documents"][0]["url"].startswith("https://")
    assert [c["id"] for c in ev["model"]] == ["M1"]
    thumb = ev["images"][0]["thumbnail_url"]
    assert thumb.startswith("/api/thumbnails/")
    img = Image.open(io.BytesIO(alice.get(thumb).content))
    assert max(img.size) <= 160
    finding = answer["findings"][0]
    assert finding["image_index"] == 0 and finding["study_id"] == study["id"]
    assert finding["heatmap_url"] == f"/api/studies/{study['id']}/images/0/heatmap.png"
    assert answer["abstained"] is False and answer["change"] is None


def test_overlays_cached_per_image(alice, bob, web, ct_small):
    study, session = _study_session(alice, web, ct_small)
    base = f"/api/studies/{study['id']}/images/0"
    assert alice.get(f"{base}/overlays").json() == {
        "available": False,
        "boxes": [],
        "heatmap_url": None,
        "heatmap_kind": None,
    }
    assert alice.get(f"{base}/heatmap.png").status_code == 404
    _ask(alice, session["id"], image_index=0)
    ov = alice.get(f"{base}/overlays").json()
    assert (
        ov["available"]
        and ov["boxes"][0]["score"] == 0.81
        and ov["anomaly_score"] == 0.73
        and ov["heatmap_kind"] == "alpha"
    )
    heat = np.asarray(Image.open(io.BytesIO(alice.get(f"{base}/heatmap.png").content)))
    assert heat.shape == (128, 128, 4)
    # Transparent far from the blob, opaque at its centre.
    assert heat[0, 0, 3] == 0 and heat[58, 70, 3] > 150
    assert bob.get(f"{base}/heatmap.png").status_code == 404
    assert bob.get(f"{base}/overlays").status_code == 404


def test_session_history_listing(alice, web):
    _, s1 = _study_session(alice, web)
    s2 = alice.post("/api/sessions", json={"title": "Empty one"}).json()
    _ask(alice, s1["id"], "Is there a mass?")
    _ask(alice, s1["id"], "What else could it be?")
    listed = alice.get("/api/sessions").json()
    assert [s["id"] for s in listed] == [s1["id"], s2["id"]]  # most recently active first
    assert listed[0]["title"] == "Is there a mass?" and listed[0]["n_messages"] == 4
    assert listed[1]["title"] == "Empty one" and listed[1]["n_messages"] == 0
    full = alice.get(f"/api/sessions/{s1['id']}").json()
    roles = [m["role"] for m in full["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert full["messages"][1]["payload"]["differential"][0]["probability"] == 0.62
    assert full["messages"][2]["content"] == "What else could it be?"
    r = alice.patch(f"/api/sessions/{s1['id']}", json={"title": "Renamed"})
    assert r.json()["title"] == "Renamed"
    assert alice.delete(f"/api/sessions/{s2['id']}").status_code == 204
    assert [s["id"] for s in alice.get("/api/sessions").json()] == [s1["id"]]


def test_sessions_are_private(alice, bob, web):
    _, s = _study_session(alice, web)
    _ask(alice, s["id"])
    sid = s["id"]
    assert bob.get(f"/api/sessions/{sid}").status_code == 404
    assert bob.patch(f"/api/sessions/{sid}", json={"title": "mine"}).status_code == 404
    assert bob.delete(f"/api/sessions/{sid}").status_code == 404
    r = bob.post(f"/api/sessions/{sid}/messages", json={"question": "hi"})
    assert r.status_code == 404 and r.json()["error"]
    assert bob.get("/api/sessions").json() == []
    assert len(alice.get(f"/api/sessions/{sid}").json()["messages"]) == 2  # untouched


def test_thread_id_and_images_reach_the_agent(alice, web, scripted_agent, ct_small):
    study, session = _study_session(alice, web, ct_small)
    prior = web.upload(alice, [("p.png", web.png_bytes())], session_id=session["id"], role="prior").json()
    events = _ask(alice, session["id"], "Has it changed?", image_index=0, history="45-year-old, headaches")
    call = scripted_agent.calls[-1]
    assert call["thread_id"] == session["id"] and call["n_images"] == 1 and call["n_priors"] == 1
    assert events[-1][1]["answer"]["change"].startswith("Lesion larger")
    assert prior["id"] != study["id"]


def test_abstention_without_study(alice):
    s = alice.post("/api/sessions", json={}).json()
    answer = _ask(alice, s["id"], "What is this?")[-1][1]["answer"]
    assert answer["abstained"] is True and answer["abstain_reason"] and answer["differential"] == []


def test_bad_questions_are_json_errors(alice):
    s = alice.post("/api/sessions", json={}).json()
    r = alice.post(f"/api/sessions/{s['id']}/messages", json={"question": "   "})
    assert r.status_code == 400 and r.json()["hint"]
    r = alice.post(f"/api/sessions/{s['id']}/messages", json={"question": "x" * 5000})
    assert r.status_code == 422 and r.json()["error"].startswith("Invalid request")
    r = alice.post(
        f"/api/sessions/{s['id']}/messages",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert alice.post("/api/sessions", json={"study_id": 999}).status_code == 404
    huge = alice.post(f"/api/sessions/{s['id']}/messages", json={"question": "x" * 2_000_000})
    assert huge.status_code == 413 and huge.json()["error"]


def test_streaming_agent_pieces(make_app, users, web, tmp_path):
    from zebra_web.testing import StreamingScriptedAgent

    agent = StreamingScriptedAgent(thumb_dir=tmp_path / "t")
    app = make_app(agent_factory=lambda: agent)
    with web.sign_in(app, "bob") as c:
        _, s = _study_session(c, web)
        events = _ask(c, s["id"])
    deltas = [d["text"] for k, d in events if k == "delta"]
    assert len(deltas) > 10 and events[-1][0] == "final"


def test_agent_unavailable_is_an_error_event(make_app, users, web):
    from zebra_web.errors import AgentUnavailableError

    def broken():
        raise AgentUnavailableError("The diagnostic agent is not installed.", hint="Install it.")

    app = make_app(agent_factory=broken)
    with web.sign_in(app, "bob") as c:
        s = c.post("/api/sessions", json={}).json()
        events = _ask(c, s["id"])
        assert events[-1] == (
            "error",
            {"error": "The diagnostic agent is not installed.", "hint": "Install it."},
        )
        # The question is kept; no assistant message was invented.
        assert [m["role"] for m in c.get(f"/api/sessions/{s['id']}").json()["messages"]] == ["user"]


def test_agent_crash_does_not_leak_details(make_app, users, web):
    class Crashing:
        def ask(self, *a, **k):
            raise RuntimeError("secret internal detail /etc/passwd")

    app = make_app(agent_factory=Crashing)
    with web.sign_in(app, "bob") as c:
        s = c.post("/api/sessions", json={}).json()
        events = _ask(c, s["id"])
        assert events[-1][0] == "error" and "secret" not in str(events[-1][1])
        assert c.get("/api/me").status_code == 200


def test_question_audit_has_no_question_text(alice, web, app):
    import store

    _, s = _study_session(alice, web)
    _ask(alice, s["id"], "Patient Maria Gonzalez, is this a glioma?")
    with app.state.zebra.store.session() as db:
        events = db.scalars(select(store.AuditEvent).where(store.AuditEvent.action == "chat.question")).all()
    assert len(events) == 1 and events[0].target_id == s["id"]
    assert "Maria" not in str(events[0].details) and events[0].details["images"] == 1


def _hold_intake(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Uploads stop in de-identification until ``release`` is set; ``entered`` says one got there."""
    from zebra_web.routes import studies as study_routes

    entered, release = threading.Event(), threading.Event()
    parse = study_routes._parse

    def held(ctx, source, scratch):
        entered.set()
        release.wait(30)
        return parse(ctx, source, scratch)

    monkeypatch.setattr(study_routes, "_parse", held)
    return entered, release


def _session_of(client, session_id: str) -> dict:
    return client.get(f"/api/sessions/{session_id}").json()


def test_question_during_upload_is_refused_not_answered_without_it(
    app, alice, web, scripted_agent, monkeypatch
):
    entered, release = _hold_intake(monkeypatch)
    app.state.zebra.pending_upload_wait_s = 0.3
    s = alice.post("/api/sessions", json={}).json()
    with web.sign_in(app, "alice") as uploader, ThreadPoolExecutor(1) as pool:
        try:
            pending = pool.submit(web.upload, uploader, [("a.png", web.png_bytes())], session_id=s["id"])
            assert entered.wait(20)
            r = alice.post(f"/api/sessions/{s['id']}/messages", json={"question": "What is this?"})
            assert r.status_code == 409, r.text
            assert "still being prepared" in r.json()["error"] and r.json()["hint"]
            assert r.headers["retry-after"] == "1"
        finally:
            release.set()
        study = pending.result(timeout=30).json()
    # Neither answered without the image nor stored: the client asks again once the upload is done.
    assert scripted_agent.calls == [] and _session_of(alice, s["id"])["messages"] == []
    assert _session_of(alice, s["id"])["study_id"] == study["id"]
    assert _ask(alice, s["id"])[-1][0] == "final"
    assert scripted_agent.calls[-1]["n_images"] == 1


def test_question_waits_briefly_for_an_upload_in_progress(app, alice, web, scripted_agent, monkeypatch):
    entered, release = _hold_intake(monkeypatch)
    app.state.zebra.pending_upload_wait_s = 20
    s = alice.post("/api/sessions", json={}).json()
    with web.sign_in(app, "alice") as uploader, ThreadPoolExecutor(2) as pool:
        try:
            pending = pool.submit(web.upload, uploader, [("a.png", web.png_bytes())], session_id=s["id"])
            assert entered.wait(20)
            asked = pool.submit(_ask, alice, s["id"])
            time.sleep(0.5)
            assert not asked.done() and scripted_agent.calls == []
        finally:
            release.set()
        study = pending.result(timeout=30).json()
        events = asked.result(timeout=30)
    assert events[-1][0] == "final" and events[-1][1]["answer"]["abstained"] is False
    assert scripted_agent.calls[-1]["n_images"] == 1
    assert _session_of(alice, s["id"])["study_id"] == study["id"]


def test_question_with_a_study_links_the_session(alice, bob, web, scripted_agent):
    study = web.upload(alice, [("a.png", web.png_bytes())]).json()
    s = alice.post("/api/sessions", json={}).json()
    assert _session_of(alice, s["id"])["study_id"] is None
    events = _ask(alice, s["id"], study_id=study["id"], image_index=0)
    assert events[-1][1]["answer"]["findings"][0]["study_id"] == study["id"]
    assert scripted_agent.calls[-1]["n_images"] == 1
    assert _session_of(alice, s["id"])["study_id"] == study["id"]
    # Later questions keep using it without naming it again.
    _ask(alice, s["id"], "And the differential?")
    assert scripted_agent.calls[-1]["n_images"] == 1
    # Someone else's study is not found, and nothing is stored or linked.
    theirs = web.upload(bob, [("b.png", web.png_bytes(seed=3))]).json()
    r = alice.post(f"/api/sessions/{s['id']}/messages", json={"question": "Hm?", "study_id": theirs["id"]})
    assert r.status_code == 404
    after = _session_of(alice, s["id"])
    assert after["study_id"] == study["id"] and len(after["messages"]) == 4
