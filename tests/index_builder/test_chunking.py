"""Chunking: token limits, exact spans, sentence boundaries, overlap."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index_builder.chunking import ChunkingConfig, chunk_spans, chunk_texts, sentence_starts
from index_builder.embedders import create_text_embedder
from zebra.errors import ConfigError


class _TokenizerOnly:
    """MiniLM's tokenizer without its weights (fast): enough for chunking."""

    name = "minilm-tokenizer"
    dim = 384
    max_tokens = 256

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        from index_builder.embedders.text import builtin_text_model_dir

        self._tok = AutoTokenizer.from_pretrained(str(builtin_text_model_dir()), local_files_only=True)

    def tokenizer(self):
        return self._tok

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False, verbose=False)["input_ids"])


@pytest.fixture(scope="module")
def wordpiece() -> _TokenizerOnly:
    return _TokenizerOnly()


MEDICAL = (
    "History: 45-year-old woman with new-onset seizures. Findings: a heterogeneously enhancing mass in the "
    "right temporal lobe with surrounding vasogenic oedema (T2/FLAIR hyperintense) and mass effect on the "
    "ventricles! Differential diagnosis: glioblastoma, metastasis, abscess? Case diagnosis: glioblastoma "
    "multiforme, IDH-wildtype (WHO grade 4).\n"
)


def test_chunks_respect_limit_and_reproduce_spans_with_real_tokenizer(wordpiece: _TokenizerOnly) -> None:
    text = MEDICAL * 25
    config = ChunkingConfig(max_tokens=60, overlap=12)
    chunks = chunk_texts([text], wordpiece, config)[0]
    assert len(chunks) > 5
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
        assert wordpiece.count_tokens(c.text) <= 60
        assert c.n_tokens <= 60
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    # Consecutive chunks overlap but always move forward.
    for a, b in itertools.pairwise(chunks):
        assert a.char_start < b.char_start < a.char_end <= b.char_end or b.char_start >= a.char_end
    # The whole text is covered (nothing but white space falls between chunks).
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


def test_default_chunks_fit_minilm_input(wordpiece: _TokenizerOnly) -> None:
    text = "Word " * 3000
    chunks = chunk_texts([text], wordpiece)[0]
    assert max(wordpiece.count_tokens(c.text) for c in chunks) <= 254
    assert max(c.n_tokens for c in chunks) <= ChunkingConfig().max_tokens


def test_chunks_end_on_sentence_boundaries_when_possible() -> None:
    emb = create_text_embedder("hash")
    text = " ".join(f"Sentence number {i} is here." for i in range(50))
    chunks = chunk_texts([text], emb, ChunkingConfig(max_tokens=30, overlap=6))[0]
    assert len(chunks) > 3
    assert all(c.text.startswith("Sentence") and c.text.endswith(".") for c in chunks)


def test_short_and_empty_texts() -> None:
    emb = create_text_embedder("hash")
    short, empty = chunk_texts(["Just a few words.", "   "], emb)
    assert len(short) == 1 and short[0].text == "Just a few words." and short[0].char_start == 0
    assert empty == []


def test_overlong_sentence_is_split_at_word_starts(wordpiece: _TokenizerOnly) -> None:
    text = " ".join(["hyperintensity"] * 400)  # one sentence, several word pieces per word
    chunks = chunk_texts([text], wordpiece, ChunkingConfig(max_tokens=50, overlap=10))[0]
    for c in chunks:
        assert c.text.startswith("hyperintensity") and c.text.endswith("hyperintensity")
        assert wordpiece.count_tokens(c.text) <= 50


def test_sentence_starts() -> None:
    assert sentence_starts("One. Two! Three?\nFour") == [0, 5, 10, 17]
    assert sentence_starts("e.g. 3.5 mm") == [0, 5]


def test_invalid_configs() -> None:
    emb = create_text_embedder("hash")
    with pytest.raises(ConfigError):
        ChunkingConfig(max_tokens=300).validate(emb)
    with pytest.raises(ConfigError):
        ChunkingConfig(max_tokens=50, overlap=40).validate()
    with pytest.raises(ConfigError):
        ChunkingConfig(max_tokens=4).validate()


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(st.sampled_from([*"abc de.!?\n,;-", "xyz", "Q", "é"]), max_size=800).map("".join),
    max_tokens=st.integers(8, 40),
    overlap_frac=st.floats(0, 0.5),
)
def test_property_spans_and_limits(text: str, max_tokens: int, overlap_frac: float) -> None:
    emb = create_text_embedder("hash")
    config = ChunkingConfig(max_tokens, int(max_tokens * overlap_frac) if max_tokens > 2 else 0)
    offsets = emb.token_offsets([text])[0]
    chunks = chunk_spans(text, offsets, config)
    assert (len(chunks) == 0) == (len(offsets) == 0)
    last_start = -1
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
        assert 0 < c.n_tokens <= max_tokens
        assert emb.count_tokens(c.text) == c.n_tokens
        assert c.char_start > last_start
        last_start = c.char_start
    if chunks:
        assert chunks[0].char_start == offsets[0][0] and chunks[-1].char_end == offsets[-1][1]


def test_text_that_fits_the_encoder_stays_whole() -> None:
    emb = create_text_embedder("hash")  # max_tokens 256: whole texts up to 254 tokens
    text = " ".join(f"Word{i}." for i in range(115))  # 230 tokens (word + full stop)
    offsets = emb.token_offsets([text])[0]
    assert len(offsets) == 230
    assert len(chunk_spans(text, offsets, ChunkingConfig(200, 40))) == 2  # without the encoder limit
    whole = chunk_texts([text], emb, ChunkingConfig(200, 40))[0]
    assert len(whole) == 1 and whole[0].n_tokens == 230 and whole[0].text == text
    longer = chunk_texts([text + " Extra." * 20], emb, ChunkingConfig(200, 40))[0]
    assert len(longer) == 2 and max(c.n_tokens for c in longer) <= 200
