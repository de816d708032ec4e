"""Retrieval over index bundles: hybrid text search, image and cross-modal search, citations, and the
aggregation of hits into candidate diagnoses. Entry point: :class:`retrieval.searcher.Searcher`; see
``docs/retrieval.md``. Importing the package loads no model."""
