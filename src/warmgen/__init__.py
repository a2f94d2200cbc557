"""warmgen: Warmup Generations (Li et al., ACL 2025) for encoder-decoder and decoder-only models.

    from warmgen import WarmupConfig, WarmupTrainer, generate, load_run

Names load on first use (as in transformers), so `warmgen --help` does not wait for torch.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {"WarmupConfig": "config", "ConfigError": "errors", "WarmupTrainer": "trainer", "generate": "trainer",
            "load_run": "trainer", "DataError": "errors"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'warmgen' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
