"""The built-in anomaly-aware VLM network: open_clip encoder, ``<Ano>`` / ``<Diff>`` tokens and heads."""
