"""Open from PACS against the real test Orthanc (``.ci/orthanc.sh``): studies stored there with pydicom's real
MR/CT images are opened by accession number and by Study UID, de-identified and owned like uploads.

Skips when ``ZEBRA_TEST_DICOMWEB_URL`` is unset; ``.ci/run`` sets it. The server fixtures (``orthanc``, the
``client`` that stores the studies, ``loaded``) are those of ``tests/triage/test_dicomweb.py``, imported.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest


def _dicomweb_tests() -> Any:
    # Test folders are not packages (--import-mode=importlib): load the module by its path, once.
    name = "_zebra_tests_triage_dicomweb"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "triage" / "test_dicomweb.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_dicomweb = _dicomweb_tests()
orthanc = _dicomweb.orthanc
# The DicomwebClient that `loaded` stores with (in this module it shadows the web conftest's TestClient).
client = _dicomweb.client
loaded = _dicomweb.loaded


@pytest.fixture
def app(web_settings, scripted_agent, orthanc: dict[str, str]) -> Any:
    """The web app with ``[dicomweb]`` pointing at the test Orthanc (the users fixtures sign in to it)."""
    from zebra.config import DicomwebSettings
    from zebra_web import create_app

    dicomweb = DicomwebSettings(
        url=orthanc["url"], username=orthanc["user"], password=orthanc["password"], backoff_s=0.05
    )
    settings = web_settings.model_copy(update={"dicomweb": dicomweb})
    return create_app(settings, agent_factory=lambda: scripted_agent)


def test_open_from_orthanc_by_accession_and_by_uid(
    alice, bob, app, loaded: dict[str, Any], orthanc: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    current, prior = loaded["studies"][2], loaded["studies"][0]  # one patient's later and earlier study
    assert alice.get("/api/pacs").json() == {"configured": True}
    session = alice.post("/api/sessions", json={}).json()["id"]

    r = alice.post("/api/studies/pacs", json={"accession": current[0].AccessionNumber, "session_id": session})
    assert r.status_code == 201, r.text
    opened = r.json()
    assert opened["n_images"] == len(current) == 3 and opened["modality"] == current[0].Modality
    r = alice.post(
        "/api/studies/pacs",
        json={"study_uid": prior[0].StudyInstanceUID, "role": "prior", "session_id": session},
    )
    assert r.status_code == 201, r.text
    opened_prior = r.json()
    chat = alice.get(f"/api/sessions/{session}").json()
    assert (chat["study_id"], chat["prior_study_id"]) == (opened["id"], opened_prior["id"])
    png = alice.get(f"/api/studies/{opened['id']}/images/0.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    # De-identified: no original UID, patient ID or accession number in answers or the log.
    answers = (
        alice.get(f"/api/studies/{opened['id']}").text + alice.get(f"/api/studies/{opened_prior['id']}").text
    )
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for study in (current, prior):
        for value in (study[0].StudyInstanceUID, study[0].PatientID, study[0].AccessionNumber):
            assert value not in answers and value not in logged
    for secret in (orthanc["password"], orthanc["url"]):
        assert secret not in logged

    # Exact match only: the prefix every loaded study shares is not a search, and a miss is a clear 404.
    assert alice.post("/api/studies/pacs", json={"accession": f"{loaded['prefix']}*"}).status_code == 400
    missing = alice.post("/api/studies/pacs", json={"accession": f"{loaded['prefix']}999"})
    assert missing.status_code == 404 and "No study on the PACS" in missing.json()["error"]
    assert len(alice.get("/api/studies").json()) == 2

    # Bob sees none of it, and opening the same study gives him his own copy.
    assert bob.get(f"/api/studies/{opened['id']}").status_code == 404
    r = bob.post("/api/studies/pacs", json={"accession": current[0].AccessionNumber})
    assert r.status_code == 201 and r.json()["id"] not in (opened["id"], opened_prior["id"])


def test_wrong_credentials_are_a_generic_503_and_stay_out_of_the_log(
    web_settings, scripted_agent, orthanc: dict[str, str], loaded: dict[str, Any], web, caplog
) -> None:
    from zebra.config import DicomwebSettings
    from zebra_web import create_app
    from zebra_web.users import create_user

    wrong = "wrong-" + orthanc["password"][::-1]
    dicomweb = DicomwebSettings(url=orthanc["url"], username=orthanc["user"], password=wrong, backoff_s=0.05)
    app = create_app(
        web_settings.model_copy(update={"dicomweb": dicomweb}), agent_factory=lambda: scripted_agent
    )
    create_user(app.state.zebra.store, "carol", web.PASSWORD)
    caplog.set_level(logging.INFO)
    with web.sign_in(app, "carol") as c:
        r = c.post("/api/studies/pacs", json={"accession": loaded["studies"][1][0].AccessionNumber})
        assert r.status_code == 503 and r.json()["error"] == "The PACS could not be reached."
        assert c.get("/api/studies").json() == []
    assert "DicomwebAuthError" in caplog.text
    for secret in (wrong, orthanc["url"], loaded["studies"][1][0].AccessionNumber):
        assert secret not in r.text and secret not in caplog.text
