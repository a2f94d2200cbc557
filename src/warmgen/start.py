"""The model a training run starts from: a new one (the same on every process), the stopped run's
last checkpoint (`--resume`), or a shared SFT warm start (`warmup.sft_warm_start_from`)."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CONFIG_NAME, STATE_NAME, load_checkpoint, load_trainer_state, recover_checkpoints, save_checkpoint
from .config import ConfigError, WarmupConfig
from .config_files import differences, read_yaml
from .distributed import Processes
from .errors import TrainingError
from .methods import add_method_tokens, learns_warmups
from .models import load_model, ready_model
from .rundir import init_checkpoint, last_checkpoint, load_warm_start


def _new_model(config: WarmupConfig, train_examples, given_model=None):
    """(model, tokenizer, sep_id) at the start of training: `given_model` (model, tokenizer) made ready,
    else `model.name` loaded; presets fit their tokenizer to the training split."""
    if given_model is not None:
        model, tokenizer, sep_id = ready_model(*given_model, config.model, learns_warmups=learns_warmups(config))
    else:
        sources = [turn["content"] for e in train_examples for turn in (e.messages or [{"content": e.source}])]  # every turn of a chat
        model, tokenizer, sep_id = load_model(config.model, sources, [e.target for e in train_examples],
                                              learns_warmups=learns_warmups(config), task=config.data.task)
    add_method_tokens(model, tokenizer, config)
    return model, tokenizer, sep_id


def starting_model(config: WarmupConfig, resume: bool, procs: Processes, run_dir: Path, train_examples, given_model):
    """(model, tokenizer, sep_id, state, warm start log): the stopped run's last checkpoint, a shared
    SFT warm start, or a new model (the same on every process); `state` is None for a new model."""
    last_dir = last_checkpoint(run_dir)
    if resume:
        recover_checkpoints(last_dir.parent)
        if not (last_dir / STATE_NAME).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume in {last_dir}; start over without --resume "
                                    "(with --overwrite delete or move if the folder holds the stopped run)")
        changed = differences(read_yaml(last_dir / CONFIG_NAME) or {}, config.to_dict())
        if changed:
            raise ConfigError(f"--resume: {last_dir} was trained with another config ({'; '.join(changed)}); resume with the "
                              "settings it was trained with, or start a new run in another output_dir")
        model, tokenizer, sep_id, _ = load_checkpoint(last_dir, config.model)
        state = load_trainer_state(last_dir / STATE_NAME)
        if len(state.rng) != procs.world:
            raise TrainingError(f"{last_dir} was saved by {len(state.rng)} process(es); resume it with as many, not {procs.world}")
        return model, tokenizer, sep_id, state, []
    if learns_warmups(config) and config.warmup.sft_warm_start_from:
        return load_warm_start(config, procs.world)
    if procs.world == 1:
        return *_new_model(config, train_examples, given_model), None, []
    # Every process must start from the same weights and tokenizer: the main process builds them.
    init_dir = init_checkpoint(run_dir)
    if procs.is_main:
        save_checkpoint(init_dir, *_new_model(config, train_examples, given_model)[:2], config, None)
    procs.barrier()
    model, tokenizer, sep_id, _ = load_checkpoint(init_dir, config.model)
    torch.manual_seed(config.seed * 1000 + procs.rank)  # each process samples its own warmups
    return model, tokenizer, sep_id, None, []
