"""Building blocks of the synthetic data generator (:mod:`zebra.datasets.convert.synthetic`)."""
