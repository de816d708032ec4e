"""Pure metric functions (numpy), one module per family.

- :mod:`eval.metrics.localisation`: the project's one IoU/AP implementation (code in :mod:`vlm.eval.localisation`): per-image AP, mAP and ACC50 under
  the ``nova`` (NOVA reference, 11-point, every image) and ``coco`` (101-point, images with gold boxes)
  protocols, and pooled data-set AP;
- :mod:`eval.metrics.captioning`: corpus BLEU (sacrebleu) and ROUGE-L (rouge-score);
- :mod:`eval.metrics.terms`: clinical-term extraction and term F1;
- :mod:`eval.metrics.diagnosis`: top-k accuracy, ECE and reliability data, risk-coverage, AURC.
"""
