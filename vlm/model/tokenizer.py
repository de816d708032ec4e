"""The text tokenizer of an open_clip architecture, shared by training and evaluation."""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=4)
def tokenizer_for(arch: str) -> Any:
    """open_clip's tokenizer for ``arch`` (loading the BPE vocabulary takes a moment, so it is cached)."""
    import open_clip

    return open_clip.get_tokenizer(arch)
