"""Token-aware chunking with exact character spans.

Chunks hold at most ``max_tokens`` of the embedder's tokens (without special tokens), end on sentence
boundaries when a sentence fits, and overlap the previous chunk by up to ``overlap`` tokens of whole
sentences. A text the encoder can read whole (``embedder.max_tokens - 2`` tokens) stays one chunk. A
chunk's text is always ``document_text[char_start:char_end]``.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from index_builder.embedders.base import TextEmbedder, token_offsets
from zebra.errors import ConfigError

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP = 40

# A sentence ends after . ! ? (optionally followed by quotes/brackets) before white space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")


@dataclass(frozen=True)
class Chunk:
    """A chunk of one document: ``text == document_text[char_start:char_end]``."""

    chunk_index: int
    text: str
    char_start: int
    char_end: int
    n_tokens: int


@dataclass(frozen=True)
class ChunkingConfig:
    """Chunk size and overlap in tokens."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap: int = DEFAULT_OVERLAP

    def validate(self, embedder: TextEmbedder | None = None) -> ChunkingConfig:
        """Checks the numbers against each other and the embedder's input limit (2 special tokens).

        Raises:
            ConfigError: When the sizes are inconsistent.
        """
        if self.max_tokens < 8:
            raise ConfigError(f"Chunk size {self.max_tokens} is too small.", hint="Use at least 8 tokens.")
        if not 0 <= self.overlap < self.max_tokens // 2 + 1:
            raise ConfigError(
                f"Chunk overlap {self.overlap} must be between 0 and half the chunk size ({self.max_tokens}).",
                hint="Lower --chunk-overlap.",
            )
        if embedder is not None and self.max_tokens > embedder.max_tokens - 2:
            raise ConfigError(
                f"Chunks of {self.max_tokens} tokens exceed {embedder.name}'s limit of {embedder.max_tokens} "
                "(2 of which are special tokens).",
                hint=f"Use --chunk-tokens {embedder.max_tokens - 2} or less.",
            )
        return self


def sentence_starts(text: str) -> list[int]:
    """Character offsets where sentences begin (always includes 0)."""
    starts = [0]
    for m in _SENTENCE_END.finditer(text):
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and pos != starts[-1]:
            starts.append(pos)
    return starts


def chunk_spans(
    text: str,
    offsets: Sequence[tuple[int, int]],
    config: ChunkingConfig = ChunkingConfig(),
    *,
    whole_limit: int | None = None,
) -> list[Chunk]:
    """Splits one text given its token spans.

    Args:
        text: The document text.
        offsets: ``(start, end)`` character span of each token, in order (no special tokens).
        config: Chunk size and overlap.
        whole_limit: A text of at most this many tokens stays one chunk even when longer than
            ``config.max_tokens`` (the encoder's own limit: splitting a text it can read whole only adds
            vectors and loses context). ``None``: ``config.max_tokens``.

    Returns:
        Chunks in order; empty for a text with no tokens.
    """
    # Drop zero-width tokens some tokenizers emit; they carry no text.
    offsets = [(a, b) for a, b in offsets if b > a]
    n = len(offsets)
    if n == 0:
        return []
    max_t, overlap = config.max_tokens, config.overlap
    if n <= max(max_t, whole_limit or 0):
        return [_make(0, text, offsets, 0, n)]
    starts = [a for a, _ in offsets]
    # Token indices where a sentence starts: the first token at or after each sentence offset.
    boundaries = sorted({bisect_left(starts, s) for s in sentence_starts(text)} | {0, n})
    boundaries = [b for b in boundaries if b <= n]
    # Word starts: tokens preceded by white space or punctuation (never split inside a word piece).
    word_starts = [0] + [
        i
        for i in range(1, n)
        if offsets[i][0] > offsets[i - 1][1]
        or not text[offsets[i][0]].isalnum()
        or not text[offsets[i - 1][1] - 1].isalnum()
    ]
    chunks: list[Chunk] = []
    begin = 0
    while begin < n:
        limit = begin + max_t
        if limit >= n:
            end = n
        else:
            # Last sentence boundary that keeps the chunk within the limit, else the last word start.
            # (a boundary that would leave a chunk under half full does not count).
            j = bisect_right(boundaries, limit) - 1
            end = boundaries[j] if boundaries[j] - begin >= max_t // 2 else begin
            if end <= begin:
                k = bisect_right(word_starts, limit) - 1
                end = word_starts[k] if word_starts[k] > begin else limit
        chunks.append(_make(len(chunks), text, offsets, begin, end))
        if end >= n:
            break
        # Next chunk starts at the earliest sentence boundary inside the overlap window, else a word start.
        window_start = max(end - overlap, begin + 1)
        j = bisect_left(boundaries, window_start)
        nxt = boundaries[j] if j < len(boundaries) and boundaries[j] < end else None
        if nxt is None:
            k = bisect_left(word_starts, window_start)
            nxt = word_starts[k] if k < len(word_starts) and word_starts[k] < end else end
        begin = nxt if overlap > 0 else end
    return chunks


def _make(index: int, text: str, offsets: Sequence[tuple[int, int]], begin: int, end: int) -> Chunk:
    char_start, char_end = offsets[begin][0], offsets[end - 1][1]
    return Chunk(index, text[char_start:char_end], char_start, char_end, end - begin)


def chunk_texts(
    texts: Sequence[str], embedder: TextEmbedder, config: ChunkingConfig = ChunkingConfig()
) -> list[list[Chunk]]:
    """Chunks many texts, tokenising them in one batch call (fast tokenizers parallelise it).

    A text that fits the encoder whole (``embedder.max_tokens - 2`` tokens) stays one chunk.
    """
    config.validate(embedder)
    if not texts:
        return []
    all_offsets = token_offsets(embedder, texts)
    whole = embedder.max_tokens - 2
    return [chunk_spans(t, o, config, whole_limit=whole) for t, o in zip(texts, all_offsets, strict=True)]
