"""``zebra bench agent``'s torch/onnx comparison on a bundle whose encoder has no such backends."""

from __future__ import annotations


def test_compare_text_backends_skips_the_hashing_encoder(make_agent) -> None:
    from agent.bench import compare_text_backends

    result = compare_text_backends(make_agent(), chunks=8)
    assert set(result) == {"skipped"} and "no torch/onnx backends" in result["skipped"]
