"""warmgen: Warmup Generations (Li et al., ACL 2025) for encoder-decoder and decoder-only models."""

__version__ = "0.1.0"
