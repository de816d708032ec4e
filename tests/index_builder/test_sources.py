"""Document sources on tiny hand-made inputs, plus the real MedPix and HPO data (marked)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from index_builder.errors import SourceError, SourceSpecError
from index_builder.sources import SourceSpec, create_source
from zebra.errors import BackendNotFoundError

from .conftest import write_jsonl


def _case(uid: str, diagnosis: str, topic_title: str, discussion: str, **case_extra: str) -> dict:
    return {
        "U_id": uid,
        "TAC": [f"{uid}_img1"],
        "MRI": [],
        "Case": {
            "Title": diagnosis,
            "History": f"History of {uid}.",
            "Exam": "N/A",
            "Findings": f"Findings of {uid}.",
            "Differential Diagnosis": "A, B",
            "Case Diagnosis": diagnosis,
            **case_extra,
        },
        "Topic": {
            "Title": topic_title,
            "Disease Discussion": discussion,
            "ACR Code": "1.2",
            "Category": "Neoplasm",
        },
    }


@pytest.fixture
def medpix(tmp_path: Path) -> Path:
    root = tmp_path / "medpix"
    (root / "images").mkdir(parents=True)
    cases = [
        _case("MPX1", "Glioma", "Glioma", "Gliomas are glial tumours."),
        _case("MPX2", "Glioma", "Glioma", "Gliomas are glial tumours."),  # same discussion as MPX1
        _case("MPX3", "Abscess", "Abscess", "Abscesses have a rim."),
        {"U_id": "MPX4", "TAC": [], "MRI": ["MPX4_img1"], "Case": {"Title": "Only a title"}, "Topic": {}},
    ]
    (root / "Case_topic.json").write_text(json.dumps(cases), encoding="utf-8")
    (root / "splits.json").write_text(json.dumps({"train": ["MPX1", "MPX3", "MPX4"], "dev": ["MPX2"]}))
    descriptions = [
        {
            "Type": "CT",
            "U_id": "MPX1",
            "image": "MPX1_img1",
            "Location": "Head",
            "Description": {
                "Caption": "Axial CT of a glioma.",
                "Plane": "Axial",
                "Modality": "CT - noncontrast",
            },
        },
        {
            "Type": "CT",
            "U_id": "MPX2",
            "image": "MPX2_img1",
            "Location": "Head",
            "Description": {"Caption": "Another glioma.", "Plane": "Axial"},
        },
        {
            "Type": "CT",
            "U_id": "MPX3",
            "image": "MPX3_img1",
            "Location": "Chest",
            "Description": {"Caption": "x"},
        },
    ]
    (root / "Descriptions.json").write_text(json.dumps(descriptions), encoding="utf-8")
    from PIL import Image

    for stem in ("MPX1_img1", "MPX2_img1"):  # MPX3's image is absent on purpose
        Image.new("L", (16, 16), 128).save(root / "images" / f"{stem}.png")
    return root


def test_spec_parsing() -> None:
    spec = SourceSpec.parse("medpix:/data/mp?split=train&parts=cases")
    assert (spec.kind, spec.path, spec.options) == (
        "medpix",
        "/data/mp",
        {"split": "train", "parts": "cases"},
    )
    assert SourceSpec.parse("HPO") == SourceSpec("hpo", "", {})
    assert SourceSpec.parse("hpo?max_phenotypes=30") == SourceSpec("hpo", "", {"max_phenotypes": "30"})
    assert SourceSpec.parse("text:/a?b/c.txt?kind=x").path == "/a"  # the first '?' starts the options
    with pytest.raises(SourceSpecError):
        SourceSpec.parse("medpix:/x?split")
    with pytest.raises(SourceSpecError):
        SourceSpec.parse("  ")


def test_unknown_kind_and_option() -> None:
    with pytest.raises(BackendNotFoundError, match="Did you mean 'medpix'"):
        create_source("medpx:/x")
    with pytest.raises(SourceSpecError, match="no option splt"):
        create_source("medpix:/x?splt=train")
    with pytest.raises(SourceSpecError, match="needs a path"):
        create_source("jsonl")


def test_medpix_split_restricts_cases_not_discussions(medpix: Path) -> None:
    docs = list(create_source(f"medpix:{medpix}", split="train").documents())
    kinds = Counter(d.kind for d in docs)
    assert kinds == {"case_report": 2, "disease_discussion": 2}  # MPX4 has no narrative; glioma deduplicated
    cases = {d.doc_id: d for d in docs if d.kind == "case_report"}
    assert set(cases) == {"medpix:case/MPX1", "medpix:case/MPX3"}
    gbm = cases["medpix:case/MPX1"]
    assert gbm.diagnosis == "Glioma" and gbm.modality == "CT" and gbm.body_region == "Head"
    assert "History: History of MPX1." in gbm.text and "Exam" not in gbm.text  # N/A dropped
    assert gbm.text.startswith("Glioma\n") and gbm.meta["acr_code"] == "1.2"
    glioma = next(d for d in docs if d.kind == "disease_discussion" and d.diagnosis == "Glioma")
    assert glioma.meta["case_ids"] == ["MPX1", "MPX2"]  # the dev case's discussion is still indexed
    assert glioma.meta["category"] == "Neoplasm" and glioma.text == "Glioma\nGliomas are glial tumours."
    dev = list(create_source(f"medpix:{medpix}?split=dev&parts=cases").documents())
    assert [d.doc_id for d in dev] == ["medpix:case/MPX2"]
    # An explicit split in the spec wins over the CLI-wide one.
    assert len(list(create_source(f"medpix:{medpix}?split=dev&parts=cases", split="train").documents())) == 1


def test_medpix_errors(medpix: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceSpecError, match="split"):
        list(create_source(f"medpix:{medpix}?split=test").documents())
    with pytest.raises(SourceSpecError, match="parts"):
        list(create_source(f"medpix:{medpix}?parts=bogus").documents())
    with pytest.raises(SourceError, match=r"Case_topic\.json"):
        list(create_source(f"medpix:{tmp_path}").documents())
    (medpix / "splits.json").unlink()
    with pytest.raises(SourceError, match=r"splits\.json"):
        list(create_source(f"medpix:{medpix}?split=train").documents())


def test_medpix_images(medpix: Path) -> None:
    items = list(create_source(f"medpix-images:{medpix}").images())
    assert [i.image_id for i in items] == ["medpix-images:MPX1_img1", "medpix-images:MPX2_img1"]
    first = items[0]
    assert (
        first.caption == "Axial CT of a glioma." and first.diagnosis == "Glioma" and first.case_id == "MPX1"
    )
    assert Path(first.path).is_file() and first.meta["plane"] == "Axial" and first.modality == "CT"
    assert [i.case_id for i in create_source(f"medpix-images:{medpix}", split="dev").images()] == ["MPX2"]


def test_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "id": "1",
                "title": "T",
                "text": "Body.",
                "diagnosis": "D",
                "kind": "literature",
                "url": "http://x",
            },
            {"text": "No id here."},
            {"id": "3", "title": "no text"},
        ],
    )
    docs = list(create_source(f"jsonl:{path}?name=papers").documents())
    assert [d.doc_id for d in docs] == ["papers:1", "papers:line2"]
    assert docs[0].kind == "literature" and docs[0].diagnosis == "D" and docs[0].meta == {"url": "http://x"}
    assert docs[1].title == "No id here." and docs[1].kind == "text"
    (tmp_path / "bad.jsonl").write_text("[1, 2]\n")
    with pytest.raises(SourceError, match="not a JSON object"):
        list(create_source(f"jsonl:{tmp_path / 'bad.jsonl'}").documents())
    with pytest.raises(SourceError, match="not found"):
        list(create_source(f"jsonl:{tmp_path / 'missing.jsonl'}").documents())


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('ID,Title,Text,Diagnosis,Extra\n7,Seven,"Text, with comma",Dx,e\n8,Eight,,Dx,\n', "utf-8")
    docs = list(create_source(f"csv:{path}").documents())
    assert len(docs) == 1 and docs[0].doc_id == "csv:7" and docs[0].text == "Text, with comma"
    assert docs[0].meta == {"extra": "e"}
    (tmp_path / "b.csv").write_text("a;b\n1;2\n")
    with pytest.raises(SourceError, match="no text column"):
        list(create_source(f"csv:{tmp_path / 'b.csv'}?delimiter=;").documents())


def test_markdown_and_text(tmp_path: Path) -> None:
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    (tmp_path / "notes" / "a.md").write_text("Intro line\n\n## Cortical dysplasia\n\nBody.", "utf-8")
    (tmp_path / "notes" / "sub" / "b_file.md").write_text("No heading here.", "utf-8")
    (tmp_path / "notes" / "c.txt").write_text("Plain text.", "utf-8")
    md = list(create_source(f"markdown:{tmp_path / 'notes'}").documents())
    assert [(d.doc_id, d.title) for d in md] == [
        ("markdown:a.md", "Cortical dysplasia"),
        ("markdown:sub/b_file.md", "b file"),
    ]
    txt = list(create_source(f"text:{tmp_path / 'notes'}?kind=literature").documents())
    assert [(d.doc_id, d.title, d.kind) for d in txt] == [("text:c.txt", "c", "literature")]


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "imgs" / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "x" / "b.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    items = list(create_source(f"images:{tmp_path / 'imgs'}").images())
    assert [i.image_id for i in items] == ["images:a.png", "images:x/b.jpg"]
    assert list(create_source(f"images:{tmp_path / 'imgs'}").documents()) == []


def test_nova_source(tmp_path: Path) -> None:
    nova = pytest.importorskip("zebra_datasets.nova")
    from PIL import Image

    root = tmp_path / "nova"
    (root / "images").mkdir(parents=True)
    records = []
    for case, dx in (("c1", "Glioma"), ("c2", "Meningioma")):
        for k in range(2):
            name = f"{case}_{k}.png"
            Image.new("L", (8, 8)).save(root / "images" / name)
            records.append(
                nova.NovaRecord(
                    filename=name,
                    image_path=f"images/{name}",
                    case_id=case,
                    scan_id=f"{case}s",
                    caption_text=f"Caption {k} of {case}.",
                    meta={"clinical_history": f"History {case}.", "final_diagnosis": dx},
                )
            )
    nova.write_nova(records, root, images="keep")
    docs = list(create_source(f"nova:{root}").documents())
    kinds = Counter(d.kind for d in docs)
    assert kinds == {"caption": 4, "case_report": 2}
    case = next(d for d in docs if d.doc_id == "nova:case/c2")
    assert case.diagnosis == "Meningioma" and "History c2." in case.text and "Caption 1 of c2." in case.text
    items = list(create_source(f"images:{root}").images())
    assert len(items) == 4 and items[0].caption and items[0].diagnosis in {"Glioma", "Meningioma"}


@pytest.mark.shared_data
def test_real_medpix_counts(medpix_root: Path) -> None:
    train = list(create_source(f"medpix:{medpix_root}?split=train").documents())
    kinds = Counter(d.kind for d in train)
    assert kinds["case_report"] == 535 and kinds["disease_discussion"] == 580
    dev = list(create_source(f"medpix:{medpix_root}?split=dev&parts=cases").documents())
    assert len(dev) == 67 and not {d.doc_id for d in dev} & {d.doc_id for d in train}
    assert len({d.doc_id for d in train}) == len(train)
    assert all(d.diagnosis for d in train)
    images = list(create_source(f"medpix-images:{medpix_root}").images())
    assert len(images) == 808 and all(Path(i.path).is_file() for i in images[:20])


@pytest.mark.slow
def test_hpo_profiles(zebra_env: Path) -> None:
    docs = list(create_source("hpo?max_phenotypes=30").documents())
    by_db = Counter(next(k for k in ("orpha", "omim") if k in d.meta) for d in docs)
    assert by_db["orpha"] > 3000 and by_db["omim"] > 7000
    assert len({d.doc_id for d in docs}) == len(docs)
    assert all(d.title and d.kind == "phenotype_profile" and d.diagnosis == d.title for d in docs)
    marfan = next(d for d in docs if d.meta.get("omim") == "OMIM:154700")
    assert "Marfan" in marfan.title and "Clinical features:" in marfan.text
    assert len(marfan.meta["hpo_ids"]) <= 30 < marfan.meta["n_phenotypes"]
    assert "Autosomal dominant inheritance" in marfan.text
    # The second read comes from the JSON cache, identical.
    again = list(create_source("hpo?max_phenotypes=30").documents())
    assert [d.text for d in again[:50]] == [d.text for d in docs[:50]]
