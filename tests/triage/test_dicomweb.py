"""DICOMweb triage against a real Orthanc (``.ci/orthanc.sh``): QIDO -> WADO -> triage -> STOW round trip,
the SR and map validated by dcmtk and dicom3tools, and the failures (credentials, unreachable server, a study
that vanishes, a malformed object) giving clear errors and losing nothing.

The server tests skip when ``ZEBRA_TEST_DICOMWEB_URL`` is unset; ``.ci/run`` sets it, so CI runs them all.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacs.client import DicomwebClient
from pacs.errors import DicomwebAuthError, DicomwebQueryError, DicomwebUnreachableError
from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage

URL_ENV, USER_ENV, PASSWORD_ENV = (
    "ZEBRA_TEST_DICOMWEB_URL",
    "ZEBRA_TEST_DICOMWEB_USER",
    "ZEBRA_TEST_DICOMWEB_PASSWORD",
)


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def orthanc() -> dict[str, str]:
    """The test server's URL and credentials; skips without one (CI always has one)."""
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(f"{URL_ENV} is not set (.ci/orthanc.sh starts a test Orthanc)")
    return {"url": url, "user": os.environ.get(USER_ENV, ""), "password": os.environ.get(PASSWORD_ENV, "")}


@pytest.fixture
def pacs_env(
    zebra_env: Path, orthanc: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Points the settings' [dicomweb] at the test server (short backoff) for this test."""
    from pacs import source
    from zebra.config import get_settings

    monkeypatch.setenv("ZEBRA_DICOMWEB__URL", orthanc["url"])
    monkeypatch.setenv("ZEBRA_DICOMWEB__USERNAME", orthanc["user"])
    monkeypatch.setenv("ZEBRA_DICOMWEB__PASSWORD", orthanc["password"])
    monkeypatch.setenv("ZEBRA_DICOMWEB__BACKOFF_S", "0.05")
    get_settings.cache_clear()
    source.reset_client()
    yield orthanc
    source.reset_client()
    get_settings.cache_clear()


@pytest.fixture
def client(orthanc: dict[str, str]) -> DicomwebClient:
    return DicomwebClient(orthanc["url"], username=orthanc["user"], password=orthanc["password"])


@pytest.fixture
def loaded(client: DicomwebClient) -> dict[str, Any]:
    """Three real studies (pydicom's MR and CT images as 3-slice series) stored into the server under a fresh
    accession prefix; two belong to one patient (the later one gets the earlier one as its prior)."""
    from pacs.samples import sample_studies

    prefix = f"ZT{uuid.uuid4().hex[:8].upper()}"
    studies = sample_studies(prefix, 3, slices=3, patients=2)
    for study in studies:
        client.store(study)
    return {"prefix": prefix, "query": f"dicomweb:AccessionNumber={prefix}*", "studies": studies}


def _instances(client: DicomwebClient, study_uid: str) -> list[dict[str, Any]]:
    return client._client.search_for_instances(study_instance_uid=study_uid)


def _uids(records: list[dict[str, Any]], tag: str = "00080018") -> set[str]:
    return {r[tag]["Value"][0] for r in records if tag in r}


def _run(query: str, out: Path, store: Any, **kwargs: Any) -> Any:
    options = TriageOptions(progress=False, write_back=kwargs.pop("write_back", True), max_attempts=2)
    return run_triage(
        query,
        out=out,
        analyser=AnalyserSpec(analyser=kwargs.pop("analyser", "fake")),
        options=options,
        store=store,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------------- no server
def test_query_parsing_accepts_keywords_and_refuses_the_rest() -> None:
    from pacs.source import parse_query

    filters, limit = parse_query("dicomweb:ModalitiesInStudy=MR&StudyDate=20260101-&limit=5")
    assert filters == {"ModalitiesInStudy": "MR", "StudyDate": "20260101-"} and limit == 5
    assert parse_query("dicomweb:") == ({}, None)
    for bad in (
        "dicomweb:NotAKeyword=1",
        "dicomweb:limit=0",
        "dicomweb:StudyDate=1&StudyDate=2",
        "dicomweb:offset=3",
    ):
        with pytest.raises(DicomwebQueryError):
            parse_query(bad)


def test_unreachable_server_is_retried_with_backoff_then_a_clear_error_without_the_url() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    secret = "s3cret-pw-" + uuid.uuid4().hex
    c = DicomwebClient(
        f"http://127.0.0.1:{port}/dicom-web",
        username="u",
        password=secret,
        fetch_attempts=3,
        backoff_s=0.5,
        sleep=waits.append,
        timeout_s=2,
    )
    with pytest.raises(DicomwebUnreachableError) as info:
        c.fetch_study("1.2.3.4.5")
    assert waits == [0.5, 1.0]  # backoff doubles between tries
    text = str(info.value)
    assert (
        str(port) not in text and secret not in text and "1.2.3.4.5" not in text and "did not answer" in text
    )
    assert secret not in repr(c) and str(port) not in repr(c)


def test_malformed_object_from_the_server_is_refused_by_intake() -> None:
    from pacs.source import load_study
    from zebra.errors import IntakeError

    class Stub:
        def fetch_study(self, uid: str) -> list[bytes]:
            return [b"DICM" + os.urandom(300)]

    with pytest.raises(IntakeError):
        load_study("dicomweb:1.2.3.4", client=Stub())


# ---------------------------------------------------------------------------------------------------- server
def test_qido_triage_stow_round_trip(
    pacs_env: dict[str, str],
    loaded: dict[str, Any],
    client: DicomwebClient,
    store: Any,
    tmp_path: Path,
    caplog,
) -> None:
    from pacs.results import result_uid

    caplog.set_level(logging.DEBUG)
    summary = _run(loaded["query"], tmp_path / "out", store, run_name="rt")
    assert summary.counts["done"] == 3 and summary.counts["error"] == 0 and summary.complete
    from triage import queue

    items = {i["accession"]: i for i in queue.items(store, summary.run_id)}
    assert sorted(items) == [f"{loaded['prefix']}{i:03d}" for i in range(3)]
    assert sum(bool(i["result"]["has_prior"]) for i in items.values()) == 1  # patient 0: studies 0 and 2
    for n, study in enumerate(loaded["studies"]):
        study_uid = study[0].StudyInstanceUID
        result = items[f"{loaded['prefix']}{n:03d}"]["result"]
        sr_uid, map_uid = result_uid("rt", study_uid, "sr"), result_uid("rt", study_uid, "map")
        assert result["pacs"] == {"sr": sr_uid, "map": map_uid, "map_kind": "parametric-map"}
        records = _instances(client, study_uid)
        assert _uids(records) == {ds.SOPInstanceUID for ds in study} | {sr_uid, map_uid}
        sr = client._client.retrieve_instance(study_uid, result_uid("rt", study_uid, "sr-series"), sr_uid)
        _validate(sr, tmp_path / f"sr{n}.dcm")
        # The SCOORD is on an original image that exists in the PACS, in the original series.
        refs = _scoord_refs(sr)
        assert refs and refs <= {ds.SOPInstanceUID for ds in study}
        text = _texts(sr)
        top = result["differential"][0]
        assert any(top["diagnosis"] in t and f"{top['probability']:.3f}" in t for t in text)
        assert any("Research use only" in t for t in text)
        assert any(t.startswith("Abstained") == bool(result["abstained"]) for t in text if "bstain" in t)
        pm = client._client.retrieve_instance(study_uid, result_uid("rt", study_uid, "map-series"), map_uid)
        assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.StudyInstanceUID == study_uid
        _validate(pm, tmp_path / f"pm{n}.dcm", sr=False)
        # Nothing identifying in the stored result or the log: no original UID, no credentials, no URL.
        flat = repr(result)
        assert study_uid not in flat and study[0].PatientID not in flat
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (
        pacs_env["password"],
        pacs_env["url"],
        *(s[0].StudyInstanceUID for s in loaded["studies"]),
    ):
        assert secret not in logged

    # Writing the same study's results again (a resumed run) replaces them: no new instance.
    from pacs import source, writeback

    study = loaded["studies"][0]
    before = _uids(_instances(client, study[0].StudyInstanceUID))
    path = f"dicomweb:{study[0].StudyInstanceUID}"
    from triage.fake import FakeAnalyser
    from triage.types import WorkItem
    from triage.worker import build_result

    work = WorkItem(item_key="again", accession=None, study_path=path)
    analysis = FakeAnalyser().analyse(work)
    writeback.write_results(work, analysis, build_result(work, analysis), run_name="rt")
    source.forget(path)
    assert _uids(_instances(client, study[0].StudyInstanceUID)) == before


def _validate(ds: Any, path: Path, *, sr: bool = True) -> None:
    """dsrdump (SR) and dciodvfy report no error."""
    for tool in ("dsrdump", "dciodvfy"):
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (.ci/orthanc.sh installs dcmtk and dicom3tools)"
            if not os.environ.get(URL_ENV):
                pytest.skip(message)
            pytest.fail(message)  # CI installs them with the server: never skipped there
    ds.save_as(path, enforce_file_format=True)
    if sr:
        proc = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        assert "Imaging Measurement Report" in proc.stdout and "SCOORD" in proc.stdout
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def _walk(items: Any) -> Iterator[Any]:
    for item in items or []:
        yield item
        yield from _walk(getattr(item, "ContentSequence", None))


def _scoord_refs(sr: Any) -> set[str]:
    refs = set()
    for item in _walk(sr.ContentSequence):
        if getattr(item, "ValueType", "") == "SCOORD":
            for child in item.ContentSequence:
                refs |= {r.ReferencedSOPInstanceUID for r in child.ReferencedSOPSequence}
    return refs


def _texts(sr: Any) -> list[str]:
    return [str(i.TextValue) for i in _walk(sr.ContentSequence) if getattr(i, "ValueType", "") == "TEXT"]


def test_wrong_credentials_give_a_clear_error_and_create_nothing(
    pacs_env: dict[str, str],
    loaded: dict[str, Any],
    store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import func, select

    from pacs import source
    from store import TriageRun
    from zebra.config import get_settings

    monkeypatch.setenv("ZEBRA_DICOMWEB__PASSWORD", "not-the-password")
    get_settings.cache_clear()
    source.reset_client()
    with pytest.raises(DicomwebAuthError) as info:
        _run(loaded["query"], tmp_path / "out", store, run_name="bad-creds")
    assert "refused the credentials" in info.value.message and "not-the-password" not in str(info.value)
    assert pacs_env["url"] not in str(info.value)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(TriageRun)) == 0


def test_unreachable_server_fails_the_run_before_anything_is_stored(
    pacs_env: dict[str, str], store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import func, select

    from pacs import source
    from store import TriageRun
    from zebra.config import get_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ZEBRA_DICOMWEB__URL", f"http://127.0.0.1:{port}/dicom-web")
    get_settings.cache_clear()
    source.reset_client()
    with pytest.raises(DicomwebUnreachableError) as info:
        _run("dicomweb:ModalitiesInStudy=MR", tmp_path / "out", store, run_name="down")
    assert str(port) not in str(info.value)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(TriageRun)) == 0


def test_study_vanishing_between_qido_and_wado_is_an_error_of_that_study_only(
    pacs_env: dict[str, str],
    loaded: dict[str, Any],
    client: DicomwebClient,
    store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import triage.dicomweb as source

    gone = loaded["studies"][1][0].StudyInstanceUID
    search = source.read_dicomweb_worklist

    def search_then_delete(worklist: str, **kwargs: Any) -> list[Any]:
        items = search(worklist, **kwargs)
        _orthanc_delete_study(pacs_env, gone)
        return items

    monkeypatch.setattr(source, "read_dicomweb_worklist", search_then_delete)
    summary = _run(loaded["query"], tmp_path / "out", store, run_name="vanish")
    assert summary.complete and summary.counts["done"] == 2 and summary.counts["error"] == 1
    from triage import queue

    errors = [i for i in queue.items(store, summary.run_id) if i["status"] == "error"]
    assert errors[0]["accession"] == f"{loaded['prefix']}001" and errors[0]["attempts"] == 1
    assert "no longer on the DICOMweb server" in errors[0]["error"] and gone not in errors[0]["error"]
    # The other studies got their results.
    for n in (0, 2):
        uid = loaded["studies"][n][0].StudyInstanceUID
        assert len(_instances(client, uid)) == 3 + 2


def _orthanc_delete_study(server: dict[str, str], study_uid: str) -> None:
    """Deletes a study through Orthanc's REST API (DICOMweb has no delete in Orthanc 1.10)."""
    import requests

    base = server["url"].rsplit("/dicom-web", 1)[0]
    auth = (server["user"], server["password"])
    found = requests.post(f"{base}/tools/lookup", data=study_uid, auth=auth, timeout=10).json()
    for entry in found:
        if entry.get("Type") == "Study":
            requests.delete(f"{base}/studies/{entry['ID']}", auth=auth, timeout=10).raise_for_status()


def test_kill_9_mid_run_then_resume_leaves_exactly_one_sr_and_one_map_per_study(
    pacs_env: dict[str, str], client: DicomwebClient, zebra_env: Path, tmp_path: Path, cli
) -> None:
    import signal
    import sqlite3
    import time

    from pacs.results import result_uid
    from pacs.samples import sample_studies

    prefix = f"ZK{uuid.uuid4().hex[:8].upper()}"
    studies = sample_studies(prefix, 6, slices=2)
    for study in studies:
        client.store(study)
    db = zebra_env / "zebra.db"
    args = [
        *("triage", f"dicomweb:AccessionNumber={prefix}*", "--out", str(tmp_path / "out")),
        *("--analyser", "fake:delay=0.4", "--workers", "2", "--resume", "--run-name", "k9"),
        *("--no-progress", "--write-back", "--max-attempts", "5"),
        # Short leases: a lease whose worker cannot be seen dead (another host, a pid not yet reaped) must
        # expire well within the resume's timeout instead of after the default 10 minutes.
        *("--lease-seconds", "20"),
    ]

    def finished() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM triage_items WHERE status = 'done'").fetchone()[0]
        except sqlite3.Error:
            return 0

    log = tmp_path / "cli.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(cli(*args), stdout=fh, stderr=fh, start_new_session=True)
    deadline = time.monotonic() + 120
    while finished() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # engine and workers at once, mid-run
    proc.wait(timeout=30)
    at_kill = finished()
    assert 0 < at_kill < 6, log.read_text(errors="replace")[-2000:]
    with log.open("ab") as fh:
        done = subprocess.run(cli(*args), stdout=fh, stderr=fh, timeout=300)
    assert done.returncode == 0, log.read_text(errors="replace")[-2000:]
    assert finished() == 6
    for study in studies:
        uid = study[0].StudyInstanceUID
        records = _instances(client, uid)
        assert _uids(records) == {ds.SOPInstanceUID for ds in study} | {
            result_uid("k9", uid, "sr"),
            result_uid("k9", uid, "map"),
        }
        assert len(records) == len(study) + 2


def test_zebra_results_already_in_a_study_are_not_read_as_inputs(
    pacs_env: dict[str, str], loaded: dict[str, Any], store: Any, tmp_path: Path
) -> None:
    from pacs import source

    _run(loaded["query"], tmp_path / "o1", store, run_name="first")  # writes an SR and a map per study
    path = f"dicomweb:{loaded['studies'][0][0].StudyInstanceUID}"
    study = source.load_study(path)
    assert len(study.series) == 1 and len(study.images) == 3  # the original series only
    assert len(source.fetched(path).parts) == 5  # fetched: 3 images + SR + map
    source.forget(path)


def test_server_lost_mid_run_gives_the_study_back_and_resume_finishes(
    pacs_env: dict[str, str],
    loaded: dict[str, Any],
    store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from triage import queue

    calls = {"n": 0}
    real_fetch = DicomwebClient.fetch_study

    def flaky(self: DicomwebClient, uid: str) -> list[bytes]:
        calls["n"] += 1
        if calls["n"] == 2:  # the server goes away after the first study
            raise DicomwebUnreachableError("The DICOMweb server did not answer the fetch request (test).")
        return real_fetch(self, uid)

    monkeypatch.setattr(DicomwebClient, "fetch_study", flaky)
    with pytest.raises(DicomwebUnreachableError):
        _run(loaded["query"], tmp_path / "o1", store, run_name="outage")
    counts = queue.counts(store, 1)
    assert counts["done"] == 1 and counts["pending"] == 2 and counts["error"] == 0
    pending = [i for i in queue.items(store, 1) if i["status"] == "pending" and i["error"]]
    assert len(pending) == 1 and "did not answer" in pending[0]["error"]
    summary = _run(loaded["query"], tmp_path / "o2", store, run_name="outage", resume=True)
    assert summary.complete and summary.counts["done"] == 3 and summary.counts["error"] == 0


def test_real_picture_wrapped_as_dicom_round_trips(
    pacs_env: dict[str, str], shared_data: Path, client: DicomwebClient, store: Any, tmp_path: Path
) -> None:
    from pacs.results import result_uid
    from pacs.samples import wrap_picture

    pictures = sorted((shared_data / "brain-tumor-mri" / "valid" / "images").glob("*.jpg"))[:2]
    if not pictures:
        pytest.skip("brain-tumour MRI pictures not found")
    prefix = f"ZW{uuid.uuid4().hex[:8].upper()}"
    studies = [wrap_picture(p, f"{prefix}{i:03d}") for i, p in enumerate(pictures)]
    for study in studies:
        client.store(study)
    summary = _run(f"dicomweb:AccessionNumber={prefix}*", tmp_path / "out", store, run_name="pic")
    assert summary.counts["done"] == len(studies) and summary.complete
    from triage import queue

    kinds = {i["result"]["pacs"]["map_kind"] for i in queue.items(store, summary.run_id)}
    assert kinds <= {"parametric-map", "secondary-capture"} and kinds
    for n, study in enumerate(studies):
        uid = study[0].StudyInstanceUID
        sr_uid = result_uid("pic", uid, "sr")
        assert sr_uid in _uids(_instances(client, uid))
        sr = client._client.retrieve_instance(uid, result_uid("pic", uid, "sr-series"), sr_uid)
        _validate(sr, tmp_path / f"sr{n}.dcm")
        assert _scoord_refs(sr) == {study[0].SOPInstanceUID}
        mp = client._client.retrieve_instance(
            uid, result_uid("pic", uid, "map-series"), result_uid("pic", uid, "map")
        )
        _validate(mp, tmp_path / f"map{n}.dcm", sr=False)


def test_settings_come_from_the_environment_and_hide_the_secrets(
    zebra_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pacs.errors import DicomwebNotConfiguredError
    from zebra.config import load_settings

    with pytest.raises(DicomwebNotConfiguredError):
        DicomwebClient.from_settings(load_settings())
    monkeypatch.setenv("ZEBRA_DICOMWEB__URL", "https://pacs.example.org/dicom-web")
    monkeypatch.setenv("ZEBRA_DICOMWEB__PASSWORD", "hunter2-secret")
    monkeypatch.setenv("ZEBRA_DICOMWEB__VERIFY_TLS", "false")
    settings = load_settings()
    assert settings.dicomweb.verify_tls is False and settings.dicomweb.write_back is False
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in repr(settings.dicomweb)
    client = DicomwebClient.from_settings(settings)
    assert "example.org" not in repr(client) and client.fetch_attempts == 3


def test_sr_cites_document_ids_and_passes_the_validators(tmp_path: Path) -> None:
    import numpy as np

    from pacs.results import build_parametric_map, build_sr
    from pacs.samples import sample_study
    from triage.agent_adapter import analysis_from_answer
    from triage.types import WorkItem
    from triage.worker import build_result

    analysis = analysis_from_answer(
        {
            "differential": [
                {"diagnosis": "Hemangioblastoma", "probability": 0.61, "citations": ["E1"]},
                {"diagnosis": "Pilocytic astrocytoma", "probability": 0.2, "citations": ["E2", "I1"]},
            ],
            "abstained": True,
            "abstain_reason": "Two diagnoses are close.",
            "findings": [
                {"anomaly_score": 0.8, "boxes": [{"x1": 5, "y1": 6, "x2": 30, "y2": 40, "score": 0.8}]}
            ],
            "change": {
                "label": "worsening",
                "confidence": 0.7,
                "statement": "Lesion larger than on the prior.",
            },
            "citations": [
                {"id": "E1", "doc_id": "medpix:MPX1234", "title": "Hemangioblastoma"},
                {"id": "E2", "doc_id": "hpo:ORPHA:123", "title": "Astrocytoma"},
            ],
        }
    )
    image = sample_study("ZSR1", modality="CT", slices=1)[0]
    analysis.analyser = "agent(test)"
    result = build_result(WorkItem(item_key="k", accession=None, study_path="x"), analysis)
    heat = np.linspace(0, 1, image.Rows * image.Columns, dtype=np.float32).reshape(image.Rows, image.Columns)
    uid = image.StudyInstanceUID
    pm = build_parametric_map(image, heat, frame_index=0, run_name="r", study_uid=uid, analyser="agent(test)")
    sr = build_sr(result, image, frame_index=0, run_name="r", study_uid=uid, map_ds=pm)
    texts = _texts(sr)
    assert any(
        "Hemangioblastoma (probability 0.610); evidence cited: E1 (document medpix:MPX1234" in t
        for t in texts
    )
    assert any("E2 (document hpo:ORPHA:123: Astrocytoma); I1" in t for t in texts)
    assert any(t == "Abstained: Two diagnoses are close." for t in texts)
    assert any("Lesion larger than on the prior. (confidence 0.700)" in t for t in texts)
    assert any(t.startswith("Model: agent(test)") for t in texts)
    assert _scoord_refs(sr) == {image.SOPInstanceUID} and sr.StudyInstanceUID == uid
    assert (
        sr.SOPInstanceUID
        == build_sr(result, image, frame_index=0, run_name="r", study_uid=uid).SOPInstanceUID
    )
    _validate(sr, tmp_path / "sr.dcm")
    _validate(pm, tmp_path / "pm.dcm", sr=False)


def test_bench_compares_dicomweb_with_files_on_the_same_studies(
    pacs_env: dict[str, str], tmp_path: Path
) -> None:
    from triage.bench import bench_dicomweb

    report = bench_dicomweb(
        n=3, workers=[1], analyser=AnalyserSpec(analyser="fake"), slices=2, work_dir=tmp_path
    )
    (entry,) = report["results"]
    assert entry["files"]["done"] == entry["dicomweb"]["done"] == 3
    assert entry["files"]["errors"] == entry["dicomweb"]["errors"] == 0
    assert entry["ratio"] == pytest.approx(
        entry["dicomweb"]["studies_per_minute"] / entry["files"]["studies_per_minute"], rel=0.01
    )
    assert report["analyser"] == "fake" and report["accession_prefix"].startswith("ZB")


def test_boxes_and_picture_come_from_the_same_analysed_image() -> None:
    from triage.agent_adapter import analysis_from_answer

    answer = {
        "findings": [
            {"index": 0, "gate": {"accepted": False, "kind": "non_medical"}},
            {
                "index": 2,
                "gate": {"accepted": True},
                "boxes": [{"x1": 1, "y1": 2, "x2": 8, "y2": 9, "score": 0.5}],
            },
        ]
    }
    analysis = analysis_from_answer(answer)
    assert analysis.image_index == 2 and analysis.boxes[0]["x2"] == 8
    assert analysis_from_answer({"findings": [{"gate": {"accepted": True}}]}).image_index == 0


def test_open_one_study_by_accession_or_uid_exactly(pacs_env: dict[str, str], loaded: dict[str, Any]) -> None:
    from pacs.errors import DicomwebStudyGoneError
    from pacs.source import open_study

    study = loaded["studies"][1]
    by_acc = open_study(accession=study[0].AccessionNumber)
    by_uid = open_study(study_uid=study[0].StudyInstanceUID)
    assert len(by_acc.images) == len(by_uid.images) == 3
    assert by_acc.study_uid == by_uid.study_uid != study[0].StudyInstanceUID  # de-identified
    with pytest.raises(DicomwebQueryError):
        open_study(accession=f"{loaded['prefix']}*")  # a user's value is never a wildcard search
    with pytest.raises(DicomwebQueryError):
        open_study()
    with pytest.raises(DicomwebStudyGoneError):
        open_study(accession="NOSUCHACC")
