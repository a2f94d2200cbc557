"""What produced a result: library versions and the git commit, recorded beside every metric."""

from __future__ import annotations

import subprocess
from pathlib import Path

import sacrebleu
import tokenizers
import torch
import transformers

from . import __version__


def library_versions() -> dict[str, str]:
    return {"warmgen": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "sacrebleu": sacrebleu.__version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
