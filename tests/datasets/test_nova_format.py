"""NOVA layout: exact writing, liberal reading (the real file's layout and its variants), errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.errors import MissingColumnsError
from zebra_datasets.nova import BBox, NovaDataset, NovaRecord, read_nova, write_nova
from zebra_datasets.schema import BBOX_TYPE, COLUMNS

# The real nova-v1.parquet: a list of {x, y, width, height, source} structs and a meta struct.
REAL_BBOX = pa.struct(
    [
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("width", pa.float64()),
        ("height", pa.float64()),
        ("source", pa.string()),
    ]
)
REAL_META = pa.struct([("clinical_history", pa.string()), ("final_diagnosis", pa.string())])


def _records(src: Path, write_png) -> list[NovaRecord]:
    img1 = write_png(src / "a.png", value=1)
    img2 = write_png(src / "b.png", value=2)
    img3 = write_png(src / "c.png", value=3)
    return [
        NovaRecord(
            filename="case1_1.png",
            image_path="",
            case_id="case1",
            scan_id="s1",
            caption_text="Ring-enhancing lesion, right frontal.",
            bboxes=[
                BBox(10, 20, 30, 40, source="gold", label="lesion"),
                BBox(12.5, 21.0, 28.0, 39.0, source="rater1", label=None),
            ],
            meta={"clinical_history": "Headache.", "final_diagnosis": "Glioblastoma", "modality": "MR"},
            image_source=img1,
        ),
        NovaRecord(
            filename="case1_2.png",
            image_path="",
            case_id="case1",
            scan_id="s2",
            caption_text="",
            bboxes=[],
            meta={"clinical_history": "Headache.", "final_diagnosis": "Glioblastoma", "split": "dev"},
            image_source=img2,
        ),
        NovaRecord(
            filename="case2_1.png",
            image_path="",
            case_id="case2",
            scan_id="s1",
            caption_text="Ünïcode ✓ caption",
            bboxes=[BBox(0, 0, 5, 5)],
            meta={"clinical_history": None, "final_diagnosis": "Meningioma", "synthetic": "false"},
            image_source=img3,
        ),
    ]


def test_round_trip_preserves_everything(tmp_path: Path, png) -> None:
    records = _records(tmp_path / "src", png)
    parquet = write_nova(records, tmp_path / "out", name="demo", source="unit test", licence="CC0")
    assert parquet == tmp_path / "out" / "data" / "nova-v1.parquet"
    ds = read_nova(tmp_path / "out")
    assert len(ds) == 3
    for original, loaded in zip(records, ds, strict=True):
        assert loaded.image_path == f"images/{original.filename}"
        expected = NovaRecord(**{**original.__dict__, "image_path": f"images/{original.filename}"})
        assert loaded == expected
        assert loaded.meta == original.meta
        assert [b.label for b in loaded.bboxes] == [b.label for b in original.bboxes]
        assert ds.resolve_image(loaded).read_bytes() == original.image_source.read_bytes()
    assert list(ds.by_case()) == ["case1", "case2"]
    assert [r.scan_id for r in ds.by_case()["case1"]] == ["s1", "s2"]
    assert ds.gold_boxes(ds[0]) == [records[0].bboxes[0]]
    assert ds[0].bboxes[0].xyxy() == (10.0, 20.0, 40.0, 60.0)
    assert ds.load_image(ds[2]).size == (32, 24)
    assert not ds.is_synthetic
    info = json.loads((tmp_path / "out" / "data" / "dataset.json").read_text())
    assert info["name"] == "demo" and info["n_rows"] == 3 and info["n_cases"] == 2
    assert info["synthetic"] is False and info["licence"] == "CC0" and info["converter_version"]
    # Atomic write leaves no temporary file behind.
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == [
        "dataset.json",
        "nova-v1.parquet",
    ]


def test_written_schema_is_exactly_novas(tmp_path: Path, png) -> None:
    write_nova(_records(tmp_path / "src", png), tmp_path / "out")
    schema = pq.read_schema(tmp_path / "out" / "data" / "nova-v1.parquet")
    assert tuple(schema.names) == COLUMNS
    for name in ("filename", "image_path", "case_id", "scan_id", "caption_text"):
        assert schema.field(name).type == pa.string()
    assert schema.field("bboxes").type == pa.list_(BBOX_TYPE)
    assert [f.name for f in BBOX_TYPE] == ["x", "y", "width", "height", "source"]
    meta = schema.field("meta").type
    names = [f.name for f in meta]
    assert names[:2] == ["clinical_history", "final_diagnosis"]
    assert {"modality", "split", "synthetic", "box_labels"} <= set(names)
    assert all(f.type == pa.string() for f in meta)
    table = pq.read_table(tmp_path / "out" / "data" / "nova-v1.parquet").to_pylist()
    # A meta field absent from a row is null; per-box labels sit in meta as a JSON list.
    assert table[0]["meta"]["split"] is None and table[1]["meta"]["modality"] is None
    assert json.loads(table[0]["meta"]["box_labels"]) == ["lesion", None]


def test_link_mode_symlinks_to_the_source(tmp_path: Path, png) -> None:
    records = _records(tmp_path / "src", png)
    write_nova(records, tmp_path / "out", images="link")
    linked = tmp_path / "out" / "images" / "case1_1.png"
    assert linked.is_symlink() and Path(os.readlink(linked)) == records[0].image_source.resolve()
    ds = read_nova(tmp_path / "out" / "data" / "nova-v1.parquet")  # the parquet file itself works too
    assert ds.root == tmp_path / "out"
    assert ds.load_image(ds[0]).size == (32, 24)


def test_rewriting_a_read_set_copies_its_images(tmp_path: Path, png) -> None:
    write_nova(_records(tmp_path / "src", png), tmp_path / "one")
    ds = read_nova(tmp_path / "one")
    write_nova(ds.records, tmp_path / "two")
    again = read_nova(tmp_path / "two")
    assert again.records == ds.records
    assert (tmp_path / "two" / "images" / "case2_1.png").read_bytes() == (
        tmp_path / "one" / "images" / "case2_1.png"
    ).read_bytes()


def test_duplicate_file_names_of_different_images_are_refused(tmp_path: Path, png) -> None:
    records = _records(tmp_path / "src", png)
    records[1].filename = records[0].filename
    with pytest.raises(DatasetError, match="both named"):
        write_nova(records, tmp_path / "out")
    with pytest.raises(ConfigError):
        write_nova(records, tmp_path / "out", images="move")  # type: ignore[arg-type]


def _real_layout_table(image_column: pa.Array, *, meta: pa.Array | None = None) -> pa.Table:
    """Rows shaped like the real nova-v1.parquet, built by hand."""
    bboxes = pa.array(
        [
            [
                {"x": 101.0, "y": 88.0, "width": 40.0, "height": 32.0, "source": "gold"},
                {"x": 99.0, "y": 90.0, "width": 44.0, "height": 30.0, "source": "rater_1"},
            ],
            [],
            [{"x": 5.0, "y": 6.0, "width": 7.0, "height": 8.0, "source": "gold"}],
        ],
        type=pa.list_(REAL_BBOX),
    )
    if meta is None:
        meta = pa.array(
            [
                {
                    "clinical_history": "54-year-old with seizures.",
                    "final_diagnosis": "Dysembryoplastic neuroepithelial tumour",
                },
                {
                    "clinical_history": "54-year-old with seizures.",
                    "final_diagnosis": "Dysembryoplastic neuroepithelial tumour",
                },
                {"clinical_history": "Child, ataxia.", "final_diagnosis": "Pilocytic astrocytoma"},
            ],
            type=REAL_META,
        )
    return pa.table(
        {
            "filename": ["case0001_001.png", "case0001_002.png", "case0002_001.png"],
            "image_path": image_column,
            "case_id": ["case0001", "case0001", "case0002"],
            "scan_id": ["1", "1", "3"],
            "caption_text": ["Cortical lesion, left temporal.", "Same lesion, coronal.", "Cerebellar cyst."],
            "bboxes": bboxes,
            "meta": meta,
        }
    )


def test_real_nova_layout_loads_unchanged(tmp_path: Path, png) -> None:
    root = tmp_path / "Nova"
    for i, name in enumerate(["case0001_001.png", "case0001_002.png", "case0002_001.png"]):
        png(root / "images" / name, size=(480, 480), value=i)
    paths = pa.array([f"images/case000{c}_00{n}.png" for c, n in ((1, 1), (1, 2), (2, 1))])
    (root / "data").mkdir(parents=True)
    pq.write_table(_real_layout_table(paths), root / "data" / "nova-v1.parquet")
    before = (root / "data" / "nova-v1.parquet").read_bytes()

    ds = read_nova(root)
    assert (root / "data" / "nova-v1.parquet").read_bytes() == before  # read-only
    assert len(ds) == 3 and ds.case_ids == ["case0001", "case0002"]
    first = ds[0]
    assert first.caption_text == "Cortical lesion, left temporal."
    assert first.final_diagnosis == "Dysembryoplastic neuroepithelial tumour"
    assert first.clinical_history == "54-year-old with seizures."
    assert [b.source for b in first.bboxes] == ["gold", "rater_1"]
    assert [b.xyxy() for b in ds.gold_boxes(first)] == [(101.0, 88.0, 141.0, 120.0)]
    assert ds[1].bboxes == []
    assert ds.resolve_image(first) == root / "images" / "case0001_001.png"
    assert ds.load_image(ds[2]).size == (480, 480)
    assert set(first.meta) == {"clinical_history", "final_diagnosis"}


def test_image_struct_column_variant(tmp_path: Path) -> None:
    """Hugging Face ``Image`` features store {bytes, path}; the bytes are enough to load the image."""
    blobs = []
    for value in (1, 2, 3):
        buf = io.BytesIO()
        Image.new("L", (16, 12), color=value * 40).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    column = pa.array([{"bytes": b, "path": f"case_{i}.png"} for i, b in enumerate(blobs)], type=image_type)
    root = tmp_path / "hf"
    (root / "data").mkdir(parents=True)
    pq.write_table(_real_layout_table(column), root / "data" / "nova-v1.parquet")
    ds = read_nova(root)
    assert ds[1].image_path == "case_1.png" and ds[1].image_bytes == blobs[1]
    img = ds.load_image(ds[1])
    assert img.size == (16, 12) and img.getpixel((0, 0)) == 80
    cached = ds.resolve_image(ds[2])
    assert cached.is_file() and cached.read_bytes() == blobs[2]
    # Writing such a set materialises the embedded images as files.
    write_nova(ds.records, tmp_path / "out")
    assert (tmp_path / "out" / "images" / "case0002_001.png").read_bytes() == blobs[2]


def test_json_string_columns_and_missing_optional_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "image_path": ["images/x.png"],
            "case_id": [17],  # an integer id
            "bboxes": [json.dumps([{"x": 1, "y": 2, "width": 3, "height": 4, "source": "gold"}])],
            "meta": [json.dumps({"clinical_history": "h", "final_diagnosis": "d", "age": 40})],
        }
    )
    path = tmp_path / "nova-v1.parquet"
    pq.write_table(table, path)
    ds = read_nova(path)
    rec = ds[0]
    assert rec.case_id == "17" and rec.filename == "x.png" and rec.scan_id == "x" and rec.caption_text == ""
    assert rec.bboxes == [BBox(1.0, 2.0, 3.0, 4.0, "gold")]
    assert rec.meta == {"clinical_history": "h", "final_diagnosis": "d", "age": 40}


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    table = _real_layout_table(pa.array(["a.png", "b.png", "c.png"])).drop_columns(["case_id", "image_path"])
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "nova-v1.parquet")
    with pytest.raises(MissingColumnsError) as err:
        read_nova(tmp_path)
    assert err.value.missing == ["case_id", "image_path"]
    assert "case_id" in str(err.value) and "image_path" in str(err.value)
    assert isinstance(err.value, DatasetError)


def test_missing_file_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nova-v1\.parquet"):
        read_nova(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_nova(tmp_path / "nowhere")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nova-v1.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="not a readable parquet"):
        read_nova(tmp_path)


def test_image_paths_may_not_escape_the_root(tmp_path: Path, png) -> None:
    png(tmp_path / "secret.png")
    ds = NovaDataset(tmp_path / "root", [NovaRecord("s.png", "../secret.png", "c", "s")])
    with pytest.raises(DatasetError, match="outside"):
        ds.resolve_image(ds[0])
    with pytest.raises(DatasetError, match="not found"):
        NovaDataset(tmp_path, [NovaRecord("n.png", "images/n.png", "c", "s")]).load_image(
            NovaRecord("n.png", "images/n.png", "c", "s")
        )


def test_bbox_helpers() -> None:
    box = BBox.from_xyxy(30, 40, 10, 20, label="x")
    assert (box.x, box.y, box.width, box.height) == (10.0, 20.0, 20.0, 20.0)
    assert box.area == 400.0 and box.is_gold and box.within(30, 40) and not box.within(29, 40)
    assert NovaRecord("a", "a", "c", "s", meta={"synthetic": "true"}).is_synthetic
    assert not NovaRecord("a", "a", "c", "s", meta={"synthetic": "false"}).is_synthetic
