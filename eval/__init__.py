"""NOVA-style evaluation harness: metrics, judges, hierarchy-aware errors, bootstrap, resumable runs, reports.

Modules (nothing heavy is imported here):

- :mod:`eval.metrics` pure metric functions (localisation, captioning, clinical terms, diagnosis);
- :mod:`retrieval.taxonomy` ICD-10 / ACR mapping, taxonomy distance and the catastrophic abstraction error;
- :mod:`eval.bootstrap` case-level (paired) bootstrap intervals;
- :mod:`eval.judges` "same condition?" judges (offline, OpenAI-compatible LLM);
- :mod:`eval.predictors` the :class:`~eval.predictors.Predictor` protocol and registry;
- :mod:`eval.harness` :func:`~eval.harness.run_eval`; :mod:`eval.scoring` the summary;
- :mod:`eval.report` the HTML report; :mod:`eval.compare` run comparison.

See ``docs/eval.md``.
"""
