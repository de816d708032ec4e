"""``vlm/weights/MODEL_CARD.md`` from a checkpoint's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_model_card(path: Path, meta: dict[str, Any], ckpt: Path, encoder: Path) -> Path:
    """Writes the model card (data, command, metrics, intended use, limits)."""
    metrics = meta.get("metrics", {})
    det = metrics.get("tumour_valid", {})
    pairs = metrics.get("held_out_pairs", {})
    ret = metrics.get("medpix_dev_retrieval", {})
    stages = meta.get("training", {}).get("stages", {})
    size_mb = ckpt.stat().st_size / 1e6
    enc_mb = encoder.stat().st_size / 1e6
    lines = [
        "# Model card: zebra-vlm-v1 (Zebra's built-in anomaly-aware VLM)",
        "",
        "**Research use only. Not a medical device; never use it for clinical decisions.**",
        "",
        "## What it is",
        f"- Files: `{ckpt.name}` ({_mb(size_mb)}) + `{ckpt.with_suffix('.json').name}` (config, gate statistics,"
        f" metrics); `{encoder.name}` ({_mb(enc_mb)}): the vision encoder + CLIP text tower as an open_clip state"
        f" dict of architecture `{meta.get('encoder_arch')}` (`index_builder/model_configs/{meta.get('encoder_arch')}.json`).",
        "- Vision encoder: open_clip ModifiedResNet (width 16, layers [1, 2, 2, 1], 256 px, grayscale replicated to"
        " 3 channels, letterboxed), trained from scratch; 256-d attention-pooled embedding shared with retrieval.",
        "- MEDIC-AD-style heads: 8 learnable `<Ano>` tokens cross-attending to stride-16 features feed the anomaly"
        " score, K2Sight-style attribute heads (side, region, shape, margin, signal, enhancement, multiplicity, mass"
        " effect, size) and FiLM-condition an anchor-free CenterNet box head at stride 8 whose centre map is the"
        " heatmap; 4 `<Diff>` tokens on phase-correlation-aligned feature differences feed the change head"
        " (worsening/stable/improved) and a difference heatmap."
        + (
            f" Size-change cue of the change head: `{cue}` (see docs/vlm.md)."
            if (cue := meta.get("config", {}).get("change_cue"))
            else ""
        ),
        "- Captions are templates filled from the predictions; low-confidence attributes are omitted.",
        "- An input gate rejects blank, noise, colour and out-of-domain images (image statistics + Mahalanobis"
        " distances of the embedding and of the pooled trunk features to the training images).",
        "",
        "## Loading the encoder with open_clip (retrieval image embedder)",
        "```python",
        "import open_clip",
        'open_clip.add_model_config("index_builder/model_configs")',
        "model, _, _ = open_clip.create_model_and_transforms(",
        f'    "{meta.get("encoder_arch")}", pretrained="index_builder/weights/{encoder.name}"',
        ")",
        "model.eval()  # required: open_clip returns a train-mode model (batch-norm would use batch statistics)",
        "```",
        "Embedding: 256-d, `model.encode_image(x, normalize=True)`. Preprocessing that reproduces the VLM's"
        " embedding exactly: `vlm.preprocess.to_model_input(image, 256)` (grayscale, letterboxed with black, CLIP"
        " mean/std). open_clip's own transform (bicubic resize of the short side + centre crop, RGB) gives close"
        " but not identical vectors. `zebra vlm build-default` writes the export from the saved checkpoint and"
        " verifies it through open_clip (`vlm.export.verify_open_clip_export`).",
        "",
        "## Training data",
    ]
    for stage, text in meta.get("training", {}).get("data", {}).items():
        lines.append(f"- `{stage}`: {text}")
    lines += [
        "- Fixed validation split: the tumour set's `valid` split (never trained on). Caveat: this public set is a"
        " Roboflow export whose splits contain augmented copies (e.g. flipped) of the same source slices, so"
        " `valid` is not independent of `train`; numbers below overstate performance on new patients.",
        "",
        "## Reproduce",
        "```",
        "zebra vlm build-default --medpix ../shared/data/medpix-2.0 --tumor ../shared/data/brain-tumor-mri \\",
        "    --work /tmp/zebra-vlm-build --out vlm/weights",
        "```",
        "Stages in build order (epochs): "
        + ", ".join(f"`{k}` ({_epochs(v)})" for k, v in _in_build_order(stages))
        + ". CPU only (2 threads), seeded; see docs/vlm.md.",
        "",
        "## Metrics",
        "",
        "Tumour `valid` split (872 images minus unlabelled; boxes in image pixels):",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    inference = meta.get("inference")
    if inference:
        lines[-4:-4] = [
            "Inference settings (`inference` in the JSON; chosen on tumour *train* images, never on `valid`): "
            + ", ".join(f"{k} = {v}" for k, v in inference.items() if k != "chosen_on")
            + (f" ({inference['chosen_on']})" if inference.get("chosen_on") else "")
            + ".",
            "",
        ]
    for key in (
        "map30",
        "map50",
        "ap30_dataset",
        "ap50_dataset",
        "pointing_game",
        "anomaly_auroc",
        "gate_accept_rate",
    ):
        if key in det:
            lines.append(f"| {key} | {_fmt(det[key])} |")
    plain = metrics.get("tumour_valid_single_pass")
    if plain:
        lines.append(
            f"| map50 without the inference settings (single pass, size scale 1.0) | {_fmt(plain.get('map50'))} |"
        )
    lines += [
        "",
        "`map*` = AP per image with gold boxes averaged over those images (NOVA style); `ap*_dataset` = one-class AP"
        " over all detections of all images. Pointing game = heatmap maximum inside a gold box.",
        "",
        f"Held-out synthetic pairs (seeds 98/99, {pairs.get('pairs', '?')} pairs): change accuracy"
        f" {_fmt(pairs.get('change_accuracy', float('nan')))}"
        + "".join(f", {k} {_fmt(v)}" for k, v in pairs.items() if k.startswith("recall_"))
        + ".",
        "",
    ]
    if ret:
        k = ret.get("k", 10)
        lines.append(
            f"MedPix dev image-to-caption recall@{k}: trained {_fmt(ret['trained'].get(f'recall@{k}'))} vs random-weight"
            f" encoder {_fmt(ret['random_init'].get(f'recall@{k}'))} ({int(ret['trained'].get('n_queries', 0))} images,"
            f" {int(ret['trained'].get('n_captions', 0))} distinct captions)."
        )
    gate = metrics.get("gate", {})
    if gate:
        lines += [
            "",
            "Gate (`vlm.eval.gate_eval.evaluate_gate`):",
            "",
            "| input | images | share |",
            "|---|---|---|",
        ]
        for name, row in gate.items():
            if isinstance(row, dict) and "n" in row:
                what = _GATE_ROWS.get(name, name)
                lines.append(f"| {what} | {row['n']} | {row.get('what', '')} {_fmt(row['share'])} |")
    bench = metrics.get("bench")
    if bench:
        lines += [
            "",
            f"Latency (`zebra bench vlm --n {bench.get('n')}`, {bench.get('image_size', ['?'])[0]} px synthetic slice,"
            f" {bench.get('threads')} CPU threads, {bench.get('note', '')}): single image p50"
            f" {_fmt(bench['single_image']['p50_s'])} s, p95 {_fmt(bench['single_image']['p95_s'])} s; with a prior"
            f" p50 {_fmt(bench['with_prior']['p50_s'])} s, p95 {_fmt(bench['with_prior']['p95_s'])} s (target: single"
            " image p50 <= 0.3 s).",
        ]
    lines += [
        "",
        "## Intended use and limits",
        "- Intended: research prototypes of retrieval-augmented reading of head CT/MR slices; a component of"
        " Zebra's agent that must always be checked by a qualified reader.",
        "- Trained on few, mostly public teaching and Kaggle-style images plus synthetic lesions; tiny model trained"
        " for tens of minutes on 2 CPU cores. Expect misses, false positives and wrong attributes on real data.",
        "- Attributes come mostly from synthetic lesions: on real images they are weak cues, not findings.",
        "- Sizes in mm are only meaningful when the pixel spacing is known (DICOM); otherwise they are estimates"
        " (confidence 0.4, not stated in captions).",
        "- Side words assume an axial slice in radiological convention; the model does not know the plane.",
        "- The change head was trained on synthetic pairs only.",
        "- The gate is a heuristic: it may accept unusual non-medical grayscale images and reject unusual medical ones.",
        "",
        "## Training log (last epoch per stage)",
        "```",
        json.dumps({k: v["last"] for k, v in stages.items()}, indent=1, sort_keys=True)[:6000],
        "```",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


_BUILD_ORDER = ("clip", "ano-multiscale", "ano", "diff", "explain", "lit")


def _in_build_order(stages: dict[str, Any]) -> list[tuple[str, Any]]:
    rank = {name: i for i, name in enumerate(_BUILD_ORDER)}
    return sorted(stages.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _epochs(stage: dict[str, Any]) -> int:
    """Epochs a stage ran: its last logged epoch (a resumed stage logs each epoch once)."""
    return int(stage.get("last", {}).get("epoch", stage.get("epochs", 0)))


_GATE_ROWS = {
    "nova-tumor-valid": "tumour valid split (medical)",
    "nova-medpix-dev": "MedPix dev split (medical)",
    "noise": "pure noise (uniform, Gaussian, salt-and-pepper, colour, float)",
    "blank": "blank images",
    "photo": "scikit-image sample photos as shipped (colour and grayscale)",
    "photo_gray": "colour sample photos converted to grayscale",
}


def _mb(mb: float) -> str:
    """``"8.6 MB"``."""
    return f"{mb:.1f} MB"
