"""Anomaly-aware vision-language models (MEDIC-AD-style ``<Ano>``/``<Diff>`` tokens, K2Sight-style attributes).

Use :func:`vlm.registry.create_vlm` (``"builtin"``, ``"builtin:/path/ckpt.safetensors"``, ``"hf:/path"``);
results are the types of :mod:`vlm.types`. Importing this package loads no model. See ``docs/vlm.md``.
"""
