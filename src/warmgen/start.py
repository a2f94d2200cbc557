"""The model a training run starts from: a new one (the same on every process), the stopped run's
last checkpoint (`--resume`), or a shared SFT warm start (`warmup.sft_warm_start_from`): the one home
of the warm start, from checking that a checkpoint is this run's warm start to the log it brings."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CONFIG_NAME, STATE_NAME, load_checkpoint, load_trainer_state, recover_checkpoints, save_checkpoint
from .config import WarmupConfig
from .config_files import BOOKKEEPING, differences, read_yaml
from .distributed import Processes
from .errors import ConfigError, TrainingError
from .methods import add_method_tokens, learns_warmups
from .models import PRESETS, load_model, ready_model, resolve_sep_init
from .rundir import init_checkpoint, last_checkpoint
from .runlog import read_training_log
from .tasks import auto_task


def _new_model(config: WarmupConfig, train_examples, given_model=None):
    """(model, tokenizer, sep_id) at the start of training: `given_model` (model, tokenizer) made ready,
    else `model.name` loaded; presets fit their tokenizer to the training split."""
    if given_model is not None:
        model, tokenizer = given_model
        model, tokenizer, sep_id = ready_model(model, tokenizer, config.model, learns_warmups=learns_warmups(config))
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
        model, tokenizer, _ = _new_model(config, train_examples, given_model)
        save_checkpoint(init_dir, model, tokenizer, config, None)
    procs.barrier()
    model, tokenizer, sep_id, _ = load_checkpoint(init_dir, config.model)
    torch.manual_seed(config.seed * 1000 + procs.rank)  # each process samples its own warmups
    return model, tokenizer, sep_id, None, []


def check_warm_start(config: WarmupConfig, total_steps: int) -> None:
    """A shared warm start must leave the run some warmup steps."""
    steps = config.warmup.sft_warm_start_steps
    if learns_warmups(config) and config.warmup.sft_warm_start_from and steps >= total_steps:
        raise ConfigError(f"warmup.sft_warm_start_steps {steps} leaves no warmup step: the run has {total_steps}")


def warm_start_header(config: WarmupConfig) -> dict:
    """What the training log's start row says of a shared warm start."""
    return {"sft_warm_start_from": config.warmup.sft_warm_start_from} if config.warmup.sft_warm_start_from else {}


def comparable(config: dict) -> dict:
    """A config (as a dict) with `auto` settings replaced by what they mean where the model is not needed to tell.

    `data.task: auto` by the task it means, `model.sep_init: auto` where that needs no tokenizer (SFT, models from scratch), and
    `warmup.merge_repeats: auto` by false: the two differ only without dropout, where merging
    computes the same loss and gradient, so a run from before `auto` existed still matches.
    """
    model, warmup, data = config.get("model", {}), config.get("warmup", {}), config.get("data", {})
    if data.get("task") == "auto":
        data["task"] = auto_task(data)
    if "sep_init" in model:
        model["sep_init"] = resolve_sep_init(model["sep_init"], None, model.get("name") in PRESETS, config.get("method") == "warmup")
    if warmup.get("merge_repeats") == "auto":
        warmup["merge_repeats"] = False
    return config


# What may differ between an SFT run and a warmup run that starts from its checkpoint.
WARM_START_FREE = BOOKKEEPING + ("method", "warmup")


def load_warm_start(config: WarmupConfig, processes: int):
    """(model, tokenizer, sep_id, trainer state, the SFT run's training log up to the branch) for
    `warmup.sft_warm_start_from`, after checking that the checkpoint is the warm start this run would train."""
    assert config.warmup.sft_warm_start_from is not None  # starting_model asks only then
    folder = Path(config.warmup.sft_warm_start_from)
    steps = config.warmup.sft_warm_start_steps
    where = f"warmup.sft_warm_start_from: {folder}"
    if not (folder / STATE_NAME).is_file():
        raise ConfigError(f"{where} has no {STATE_NAME}: name the checkpoints/step-{steps} folder of an SFT run that "
                          f"kept it (train.save_checkpoints_at: [{steps}])")
    saved = read_yaml(folder / CONFIG_NAME) or {}
    if saved.get("method") != "sft":
        raise ConfigError(f"{where} was trained with method {saved.get('method')!r}, not sft")
    changed = differences(comparable(saved), comparable(config.to_dict()), WARM_START_FREE)
    model, tokenizer, sep_id, _ = load_checkpoint(folder, config.model)
    scratch = config.model.name in PRESETS
    ours, theirs = (resolve_sep_init(c, tokenizer, scratch, learns) for c, learns in ((config.model.sep_init, True),
                                                                                     (saved["model"]["sep_init"], False)))
    if ours != theirs:  # an SFT run under `auto` keeps <sep>'s row random; a pretrained warmup run would copy a newline's
        changed.append(f"model.sep_init: {theirs!r} there, {ours!r} now (set model.sep_init: {theirs!r} to start from it)")
    if changed:
        raise ConfigError(f"{where} was trained with another config ({'; '.join(changed)}): only method and warmup.* may "
                          "differ, or the warm start would not be this run's")
    state = load_trainer_state(folder / STATE_NAME)
    if state.step != steps:
        raise ConfigError(f"{where} is the checkpoint of step {state.step}, not of warmup.sft_warm_start_steps {steps}")
    if len(state.rng) != processes:
        raise ConfigError(f"{where} was saved by {len(state.rng)} process(es); start from it with as many, not {processes}")
    state.best = {"metric": None, "step": None}  # SFT's best was chosen by decoding without warmups
    log = [row for row in read_training_log(folder.parent.parent) if row.get("step", 0) <= steps]
    machines = [{"step": row["step"], "event": "warm_start_machine", "time": row["time"], "machine": row["machine"]}
                for row in log if "machine" in row]  # where the SFT run computed the steps this run starts from
    return model, tokenizer, sep_id, state, machines + [row for row in log if "loss" in row]
