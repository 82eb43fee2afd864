"""deepsmlm: deep-learning single-molecule localization microscopy and PSF design."""

__version__ = "0.1.0"
