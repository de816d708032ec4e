"""Stage-wise training of the built-in VLM (``clip`` -> ``ano`` -> ``diff`` -> ``explain``), as in MEDIC-AD.

Entry points: :func:`vlm.train.loop.train_stage` (one stage, resumable) and
:func:`vlm.train.build.build_default` (every stage end to end, then the shipped checkpoint).
"""
