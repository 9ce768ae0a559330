"""bifsmn: binary neural networks for keyword spotting, from raw audio to 1-bit CPU kernels."""

__version__ = "0.1.0"
