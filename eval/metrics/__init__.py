"""Pure metric functions (numpy), one module per family.

- :mod:`eval.metrics.localisation`: per-image AP at IoU thresholds (COCO 101-point), mAP, ACC50;
- :mod:`eval.metrics.captioning`: BLEU-4 (corpus and sentence), ROUGE-L;
- :mod:`eval.metrics.terms`: clinical-term extraction and term F1;
- :mod:`eval.metrics.diagnosis`: top-k accuracy, ECE and reliability data, risk-coverage, AURC.
"""
