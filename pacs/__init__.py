"""Hospital integration over DICOMweb: studies from a PACS, results back to it as DICOM.

- :class:`zebra.config.DicomwebSettings`: the operator's server (URL, credentials), ``[dicomweb]`` or
  ``ZEBRA_DICOMWEB__*``.
- :mod:`pacs.client`: QIDO-RS search, WADO-RS fetch and STOW-RS store with typed errors that never name the
  server or its credentials, and fetch retries with backoff.
- :mod:`pacs.source`: ``dicomweb:QUERY`` searches (made into triage work items by :mod:`triage.dicomweb`), fetching a study into the hardened
  intake (PS3.15 de-identification) when its lease is taken, and ``open_study`` (one study by accession
  number or UID, exact match) for a front end.
- :mod:`pacs.results`: the triage result as a Comprehensive SR (TID 1500) and the heatmap as a Parametric Map
  (or a Secondary Capture labelled derived), with UIDs derived from run and study.
- :mod:`pacs.writeback`: stores those objects with STOW-RS when write-back is on.
- :mod:`pacs.samples`: small real DICOM studies (pydicom's MR/CT images, wrapped pictures) for tests and the
  benchmark.

See ``docs/pacs.md``.
"""
