"""Building blocks of the synthetic data generator (:mod:`zebra_datasets.convert.synthetic`)."""
