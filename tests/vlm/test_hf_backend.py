"""End-to-end tests of the ``hf:`` VLM backend on tiny random Qwen2-VL and LLaVA models built offline.

The models (a few tens of thousands of weights), their WordLevel tokenizers and their image processors are
built in memory and saved once per session; no weights are downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from vlm.backends.base import VLMBackend
from vlm.backends.hf import HFVisionLanguageBackend
from vlm.hf_arch import HFModelNotFoundError, UnsupportedModelError
from vlm.hf_heads import HEADS_FILE, AnomalyHeads, save_heads
from vlm.hf_tokens import ANO_TOKEN, DIFF_TOKEN
from vlm.registry import VLMS, clear_cache, create_vlm
from vlm.types import CHANGE_LABELS, ChangeAnalysis, ImageAnalysis, StudyAnalysis
from zebra.errors import ConfigError, ModelError

SENTENCES = [
    "Describe the main imaging findings of this medical image in one short sentence .",
    "a round lesion in the left frontal lobe with mass effect",
    "no abnormality is seen , normal study",
    "the first image is the prior study and the second image is the current study",
    "has the abnormality worsened , stayed stable or improved ?",
]

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(specials: list[str], **named: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials, vocab_size=400))
    extra = [s for s in specials if s not in named.values()]
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, additional_special_tokens=extra, **named
    )


def _tiny_qwen2_vl(folder: Path, *, v2_5: bool = False) -> Path:
    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>"]
    specials += ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(specials, unk_token="<unk>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    size = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    processor_cls = transformers.Qwen2_5_VLProcessor if v2_5 else transformers.Qwen2VLProcessor
    processor = processor_cls(
        image_processor=transformers.Qwen2VLImageProcessor(size=size),
        tokenizer=tok,
        video_processor=transformers.Qwen2VLVideoProcessor(size=size),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    eos = ids["<|endoftext|>"]
    vision: dict[str, object] = {
        "depth": 2,
        "hidden_size": 32,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if v2_5:  # window attention in block 0, full attention in block 1
        vision |= {
            "intermediate_size": 64,
            "out_hidden_size": 32,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
    else:
        vision |= {"embed_dim": 32, "mlp_ratio": 2}
    config_cls = transformers.Qwen2_5_VLConfig if v2_5 else transformers.Qwen2VLConfig
    config = config_cls(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0},
            "bos_token_id": eos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model_cls = (
        transformers.Qwen2_5_VLForConditionalGeneration
        if v2_5
        else transformers.Qwen2VLForConditionalGeneration
    )
    model_cls(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _tiny_llava(folder: Path) -> Path:
    specials = ["<s>", "</s>", "<unk>", "<pad>", "<image>"]
    tok = _tokenizer(specials, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(
            size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}
        ),
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"],
        ),
        image_token_id=ids["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-vlms")
    return {"qwen2_vl": _tiny_qwen2_vl(root / "tiny-qwen2-vl"), "llava": _tiny_llava(root / "tiny-llava")}


@pytest.fixture(scope="session", params=["qwen2_vl", "llava"])
def backend(request: pytest.FixtureRequest, tiny_models: dict[str, Path]) -> HFVisionLanguageBackend:
    """The shared backend of each architecture, built through the registry (do not train it)."""
    clear_cache()
    vlm = create_vlm("hf:" + str(tiny_models[request.param]), max_new_tokens=4)
    assert isinstance(vlm, HFVisionLanguageBackend)
    return vlm


@pytest.fixture
def fresh_qwen(tiny_models: dict[str, Path], tmp_path: Path) -> HFVisionLanguageBackend:
    """A private copy of the tiny Qwen2-VL, safe to train and save into."""
    folder = shutil.copytree(tiny_models["qwen2_vl"], tmp_path / "qwen-copy")
    return HFVisionLanguageBackend(folder, max_new_tokens=2)


def _image(h: int = 70, w: int = 90, seed: int = 0) -> np.ndarray:
    """A 16-bit grayscale 'scan' with a bright blob, deliberately not square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((yy - h * 0.3) ** 2 + (xx - w * 0.6) ** 2) / (2 * (min(h, w) * 0.1) ** 2))
    return (1000 + 2500 * blob + rng.normal(0, 80, (h, w))).clip(0, 4095).astype(np.uint16)


def test_registered_in_vlm_registry(backend: HFVisionLanguageBackend) -> None:
    assert "hf" in VLMS
    assert isinstance(backend, VLMBackend)
    assert backend.name.startswith("hf:") and "untrained" in backend.name
    assert create_vlm("hf:" + str(backend.path), max_new_tokens=4) is backend  # cached per spec


def test_new_tokens_in_tokenizer_and_embeddings(backend: HFVisionLanguageBackend) -> None:
    tok = backend.tokenizer
    rows = backend.model.get_input_embeddings().weight.shape[0]
    ids = [tok.convert_tokens_to_ids(t) for t in (ANO_TOKEN, DIFF_TOKEN)]
    assert ids == [backend.token_ids[ANO_TOKEN], backend.token_ids[DIFF_TOKEN]]
    assert len(set(ids)) == 2 and all(0 <= i < rows for i in ids) and tok.unk_token_id not in ids
    encoded = tok("findings <Ano> and <Diff>", add_special_tokens=False)["input_ids"]
    assert ids[0] in encoded and ids[1] in encoded  # each is one unsplit token


def test_only_new_token_rows_receive_gradients(fresh_qwen: HFVisionLanguageBackend) -> None:
    b = fresh_qwen
    weight = b.model.get_input_embeddings().weight
    ordinary = b.tokenizer.convert_tokens_to_ids("lesion")
    vision_param = next(p for n, p in b.model.named_parameters() if "visual" in n or "vision" in n)
    with b.token_training():
        loss = b.anomaly_loss(_image(), 1.0) + b.change_loss(_image(seed=1), _image(seed=2), "worsening")
        loss.backward()
        grad = weight.grad
        assert grad is not None
        assert grad[b.token_ids[ANO_TOKEN]].abs().sum() > 0
        assert grad[b.token_ids[DIFF_TOKEN]].abs().sum() > 0
        assert torch.count_nonzero(grad[ordinary]) == 0
        assert set(grad.abs().sum(1).nonzero().flatten().tolist()) == set(b.token_ids.values())
        assert all(p.grad is not None for p in b.heads.parameters())
    assert not any(p.requires_grad for p in b.model.parameters())  # frozen again afterwards
    assert vision_param.grad is None


def test_heatmap_has_input_size_and_unit_range(backend: HFVisionLanguageBackend) -> None:
    img = _image(70, 90)
    result = backend.analyze_image(img)
    assert result.heatmap is not None
    assert result.heatmap.shape == img.shape and result.heatmap.dtype == np.float32
    assert 0.0 <= float(result.heatmap.min()) <= float(result.heatmap.max()) <= 1.0
    assert float(result.heatmap.std()) > 0  # not a constant map
    for box in result.boxes:
        assert 0 <= box.x1 < box.x2 <= 90 and 0 <= box.y1 < box.y2 <= 70 and 0.5 <= box.score <= 1.0
    assert [b.score for b in result.boxes] == sorted((b.score for b in result.boxes), reverse=True)


def test_analyze_image_returns_valid_json_serialisable_analysis(backend: HFVisionLanguageBackend) -> None:
    rgb = np.stack([_image(64, 48, seed=3)] * 3, axis=-1).astype(np.float32)
    result = backend.analyze_image(rgb)
    assert isinstance(result, ImageAnalysis) and result.gate.accepted
    assert result.anomaly_score is not None and 0.0 < result.anomaly_score < 1.0
    assert isinstance(result.caption, str)
    assert result.embedding is not None and abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-4
    assert result.model == backend.name
    data = json.loads(json.dumps(result.to_dict()))
    assert data["heatmap"]["shape"] == [64, 48]
    assert ImageAnalysis.from_dict(data).anomaly_score == pytest.approx(result.anomaly_score)
    # Deterministic: the same image gives the same score (greedy decoding, eval mode).
    assert backend.analyze_image(rgb).anomaly_score == pytest.approx(result.anomaly_score, abs=1e-6)


def test_blank_image_is_gated_out(backend: HFVisionLanguageBackend) -> None:
    result = backend.analyze_image(np.zeros((40, 40), np.uint8))
    assert not result.gate.accepted and result.gate.kind == "blank"
    assert result.heatmap is None and result.anomaly_score is None and result.boxes == []
    json.dumps(result.to_dict())


def test_analyze_with_prior_returns_change(backend: HFVisionLanguageBackend) -> None:
    current, prior = _image(70, 90, seed=4), _image(60, 60, seed=5)
    study = backend.analyze(current, prior=prior)
    assert isinstance(study, StudyAnalysis) and study.prior is not None
    change = study.change
    assert isinstance(change, ChangeAnalysis)
    assert list(change.probabilities) == list(CHANGE_LABELS)
    assert sum(change.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert change.label == max(change.probabilities, key=change.probabilities.__getitem__)
    assert change.confidence == pytest.approx(change.probabilities[change.label])
    assert change.diff_heatmap is not None and change.diff_heatmap.shape == current.shape
    assert 0.0 <= float(change.diff_heatmap.min()) <= float(change.diff_heatmap.max()) <= 1.0
    assert change.label.capitalize() in change.statement
    json.dumps(study.to_dict())
    assert backend.analyze(current).change is None
    with pytest.raises(ModelError, match="prior image"):
        backend.analyze(current, prior=study.current)


def test_embed_images_matches_prompt_features(backend: HFVisionLanguageBackend) -> None:
    a, b = _image(seed=6), _image(50, 80, seed=7)[::-1].copy()
    emb = backend.embed_images([a, b])
    hidden = backend.model.get_input_embeddings().weight.shape[1]
    assert emb.shape == (2, hidden) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert float(emb[0] @ emb[1]) < 0.9999  # different images, different embeddings
    # The vision tokens read from the prompt's first hidden state are exactly the vision tower's output.
    analysed = backend.analyze_image(a).embedding
    np.testing.assert_allclose(emb[0], analysed, atol=1e-4)
    assert backend.embed_images([]).shape == (0, hidden)


def test_train_tokens_moves_only_new_rows_and_heads_round_trip(
    fresh_qwen: HFVisionLanguageBackend, tmp_path: Path
) -> None:
    b = fresh_qwen
    weight = b.model.get_input_embeddings().weight
    before = weight.detach().clone()
    heads_before = {k: v.clone() for k, v in b.heads.state_dict().items()}
    new_ids = list(b.token_ids.values())
    losses = b.train_tokens(
        [(_image(seed=8), 1.0), (_image(60, 60, seed=9), 0.0)],
        pairs=[(_image(seed=10), _image(seed=11), "stable")],
        steps=3,
    )
    assert len(losses) == 3 and all(np.isfinite(losses))
    others = torch.ones(weight.shape[0], dtype=torch.bool)
    others[new_ids] = False
    assert torch.equal(weight.detach()[others], before[others])  # every ordinary row untouched
    assert not torch.allclose(weight.detach()[new_ids], before[new_ids])
    assert any(not torch.equal(v, heads_before[k]) for k, v in b.heads.state_dict().items())
    assert "untrained" not in b.name

    img = _image(seed=12)
    expected = b.analyze_image(img)
    saved = b.save_heads()
    assert saved == b.path / HEADS_FILE and saved.is_file()
    reloaded = HFVisionLanguageBackend(b.path, max_new_tokens=2)
    assert reloaded.heads_trained and "untrained" not in reloaded.name
    for k, v in b.heads.state_dict().items():
        assert torch.equal(reloaded.heads.state_dict()[k], v)
    reloaded_rows = reloaded.model.get_input_embeddings().weight.detach()[new_ids]
    assert torch.equal(reloaded_rows, weight.detach()[new_ids])
    got = reloaded.analyze_image(img)
    assert got.anomaly_score == pytest.approx(expected.anomaly_score, abs=1e-5)
    np.testing.assert_allclose(got.heatmap, expected.heatmap, atol=1e-5)

    # save_pretrained writes the tokens into the tokenizer and the embedding, so a reload adds nothing.
    full = b.save_pretrained(tmp_path / "finetuned")
    again = HFVisionLanguageBackend(full, max_new_tokens=2)
    assert not again.tokens_added and again.token_ids == b.token_ids
    assert torch.equal(again.model.get_input_embeddings().weight.detach()[new_ids], weight.detach()[new_ids])


def test_qwen2_5_vl_is_supported(tmp_path: Path) -> None:
    folder = _tiny_qwen2_vl(tmp_path / "tiny-qwen2.5-vl", v2_5=True)
    b = HFVisionLanguageBackend(folder, max_new_tokens=2)
    assert b.arch.model_type == "qwen2_5_vl" and "qwen2_5_vl" in b.name
    img = _image(84, 112, seed=13)
    result = b.analyze_image(img)
    assert result.heatmap is not None and result.heatmap.shape == img.shape
    assert 0.0 <= float(result.heatmap.min()) <= float(result.heatmap.max()) <= 1.0
    np.testing.assert_allclose(b.embed_images([img])[0], result.embedding, atol=1e-4)


def test_heads_file_for_another_model_is_rejected(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_models["llava"], tmp_path / "llava-copy")
    save_heads(
        folder / HEADS_FILE,
        AnomalyHeads(16),
        token_rows=torch.zeros(2, 16),
        tokens=(ANO_TOKEN, DIFF_TOKEN),
        model_type="llava",
    )
    with pytest.raises(ModelError, match="hidden size 16"):
        HFVisionLanguageBackend(folder)
    (folder / HEADS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="Cannot read VLM heads"):
        HFVisionLanguageBackend(folder)


def test_unsupported_model_type_lists_supported(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnsupportedModelError) as info:
        create_vlm("hf:" + str(folder))
    assert isinstance(info.value, ModelError)
    assert "'bert'" in info.value.message
    assert all(t in (info.value.hint or "") for t in ("qwen2_vl", "qwen2_5_vl", "llava"))


def test_missing_path_and_empty_spec_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(HFModelNotFoundError, match="does not exist") as info:
        create_vlm("hf:" + str(tmp_path / "nope"))
    assert isinstance(info.value, ModelError) and info.value.hint
    with pytest.raises(HFModelNotFoundError, match=r"no config\.json"):
        create_vlm("hf:" + str(tmp_path))
    with pytest.raises(ConfigError, match="needs a model folder"):
        create_vlm("hf:")
