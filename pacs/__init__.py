"""Hospital integration over DICOMweb: studies from a PACS, results back to it as DICOM.

- :mod:`pacs.settings`: the operator's server (URL, credentials) from ``[dicomweb]`` or ``ZEBRA_DICOMWEB__*``.
- :mod:`pacs.client`: QIDO-RS search, WADO-RS fetch and STOW-RS store with typed errors that never name the
  server or its credentials, and fetch retries with backoff.
- :mod:`pacs.source`: ``dicomweb:QUERY`` worklists for batch triage, and fetching a study into the hardened
  intake (PS3.15 de-identification) when its lease is taken.
- :mod:`pacs.results`: the triage result as a Comprehensive SR (TID 1500) and the heatmap as a Parametric Map
  (or a Secondary Capture labelled derived), with UIDs derived from run and study.
- :mod:`pacs.writeback`: stores those objects with STOW-RS when write-back is on.

See ``docs/pacs.md``.
"""
