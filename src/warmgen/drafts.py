"""The self-draft bound (`warmup.draft_from`): each example's warmup is a frozen model's greedy answer, the SFT
run's for instance, in training and at inference, so the model learns to refine its own draft (deliberation
networks, Xia et al. 2017; a draft-then-revise upper bound on what a learnt warmup could carry). If conditioning on
its own draft cannot beat SFT on a task, learnt warmups are unlikely to.

The drafter is loaded once per process and device, trusting nothing (safetensors, no remote code), and must share
the run's vocabulary: its answer's token ids are the warmup's. The run's checkpoints carry it (checkpoint.py's
`drafter/`), so they decode as trained wherever they are copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import CONFIG_NAME, load_checkpoint
from .config import WarmupConfig
from .decode import decode
from .errors import ConfigError
from .layout import make_layout
from .methods import decodes_with_warmup, learns_warmups
from .rundir import best_checkpoint

if TYPE_CHECKING:
    from .layout import Layout

_drafters: dict[tuple[str, int, str], tuple] = {}  # (checkpoint folder, its save's time, device) -> (model, layout, config, drafts)


def draft_checkpoint(path: str) -> Path:
    """The checkpoint `warmup.draft_from` names: a checkpoint folder, or a finished run's best."""
    folder = Path(path)
    if (folder / CONFIG_NAME).is_file():
        return folder
    if (best_checkpoint(folder) / CONFIG_NAME).is_file():
        return best_checkpoint(folder)
    raise ConfigError(f"warmup.draft_from: {path} is neither a checkpoint folder nor a run folder with checkpoints/best: "
                      "name the run (e.g. the SFT run) whose answers are the drafts")


def drafter_of(config: WarmupConfig) -> Path | None:
    """The checkpoint folder a run drafts with (its checkpoints carry a copy), or None for a run without drafts."""
    return draft_checkpoint(config.warmup.draft_from) if learns_warmups(config) and config.warmup.draft_from else None


def _drafter(config: WarmupConfig, layout: Layout, device) -> tuple:
    assert config.warmup.draft_from is not None
    folder = draft_checkpoint(config.warmup.draft_from)
    key = (str(folder.resolve()), (folder / CONFIG_NAME).stat().st_mtime_ns, str(device))  # a checkpoint saved again is loaded again
    if key not in _drafters:
        model, tokenizer, sep_id, drafter_config = load_checkpoint(folder)
        if tokenizer.get_vocab() != layout.tokenizer.get_vocab():
            raise ConfigError(f"warmup.draft_from: {folder} has another vocabulary than this run's model: its answers' "
                              "token ids would not be this model's tokens; draft with a model trained on the same tokenizer")
        model.requires_grad_(False)
        model.eval()
        _drafters[key] = (model.to(device), make_layout(model, tokenizer, sep_id, drafter_config), drafter_config, {})
    return _drafters[key]


@torch.no_grad()
def draft_warmups(layout: Layout, sources: list[list[int]], config: WarmupConfig, device) -> list[list[int]] | None:
    """Each source's draft (the drafter's greedy answer, cut to warmup.max_warmup_length), or None without draft_from.
    A source is drafted once per process: the drafter is frozen, so later epochs and evaluations reuse its draft."""
    if not (learns_warmups(config) and config.warmup.draft_from):
        return None
    model, drafter_layout, drafter_config, drafts = _drafter(config, layout, device)
    new = list(dict.fromkeys(tuple(source) for source in sources if tuple(source) not in drafts))
    if new:
        answers = decode(model, drafter_layout, [list(source) for source in new], decodes_with_warmup(drafter_config), drafter_config)
        drafts.update(zip(new, (answer.target for answer in answers)))
    return [list(drafts[tuple(source)][: config.warmup.max_warmup_length]) for source in sources]
