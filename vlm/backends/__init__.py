"""VLM backends: ``builtin`` (:mod:`vlm.backends.builtin`) and ``hf`` (:mod:`vlm.backends.hf`)."""
