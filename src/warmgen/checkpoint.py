"""A checkpoint folder: writing one atomically, checking and loading it, and the trainer state beside the weights.

    model.safetensors (or adapter_model.safetensors), tokenizer and portable.py's files   save_pretrained's
    warmgen.yaml           the config it was trained with
    drafter/               a warmup.draft_from run's drafter, a checkpoint folder itself (drafts.py), so that the
                           checkpoint decodes as trained wherever it is copied
    trainer_state.pt       where training stands (last and step-N only): tensors and plain values
    checksums.json         SHA-256 of every other file, written with them

What a checkpoint may never decide is whether code runs: trust (`model.trust_remote_code`,
`model.allow_bin_weights`) is the caller's, from the person's command, never the folder's own warmgen.yaml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import pickle
import random
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from . import portable
from .config import ModelConfig, WarmupConfig
from .config_files import load_config
from .errors import RunFolderError
from .models import SEP, load_adapter, load_pretrained

CONFIG_NAME = "warmgen.yaml"
STATE_NAME = "trainer_state.pt"
CHECKSUMS = "checksums.json"
DRAFTER = "drafter"


@dataclass
class TrainState:
    """Where training stands: all that `--resume` needs beside the weights, saved as trainer_state.pt
    (tensors and plain values only, so it loads with weights_only=True)."""

    step: int
    epoch: int
    batch_index: int  # the next batch of the epoch's order
    train_seconds: float
    generated_tokens: int
    skipped_steps: int
    optimizer: dict | list | None  # DeepSpeed's: one partition per process
    scheduler: dict
    best: dict  # {"metric": value or None, "step": step or None}
    rng: list  # every process's random generators (rng_state)
    warmup_memory: dict | None = None  # warmup.keep_best_warmup's kept warmups
    num_tokens: int = 0  # tokens trained on so far (see the training log's num_tokens); 0 in older checkpoints
    loss_scaler: dict | None = None  # train.mixed_precision fp16's scale and its growth counter
    evals_since_best: int = 0  # dev evaluations since the best one (train.early_stopping_patience)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def swapped_out(folder: Path) -> Path:
    """Where save_checkpoint keeps a checkpoint's previous copy while it swaps the new one in."""
    return folder.with_name(folder.name + ".old")


def _being_written(folder: Path) -> Path:
    return folder.with_name(folder.name + ".tmp")


def _refuse_link(path: Path) -> None:
    """A link where a checkpoint goes would make warmgen write or delete outside the run folder."""
    if path.is_symlink():
        raise RunFolderError(f"{path} is a symbolic link: warmgen writes and deletes checkpoints only inside the run folder; "
                             "remove the link")


def save_checkpoint(folder: Path, model, tokenizer, config: WarmupConfig, state: TrainState | None, weights: dict | None = None,
                    drafter: Path | None = None) -> None:
    """Write to a temporary folder, then swap it in: a crash never leaves a half-written checkpoint,
    and a failed write (a full disk) leaves the previous checkpoint and no temporary folder. A crash at
    any point leaves what `recover_checkpoints` puts right, and the next save clears whatever is left.

    `weights` replaces the model's own state dict (the gathered weights of a sharded model); `drafter` is the checkpoint
    folder whose answers are a warmup.draft_from run's warmups, carried as `drafter/`.
    """
    tmp, old = _being_written(folder), swapped_out(folder)
    for path in (folder, tmp, old):
        _refuse_link(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # A LoRA adapter needs no copy of the resized embedding: <sep>'s row lives in the adapter.
        model.save_pretrained(tmp, **({"save_embedding_layers": False} if hasattr(model, "peft_config") else {}),
                              **({"state_dict": weights} if weights is not None else {}))
        portable.save(tmp, model, tokenizer, config)
        config.save(tmp / CONFIG_NAME)
        if drafter is not None:
            shutil.copytree(drafter, tmp / DRAFTER, copy_function=_link_or_copy)
        if state is not None:
            torch.save(state.to_dict(), tmp / STATE_NAME)
        write_checksums(tmp)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunFolderError(f"cannot write the checkpoint {folder}: {write_failure(err, folder.parent)}") from None
    shutil.rmtree(old, ignore_errors=True)  # a copy a killed save left half deleted
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(source: str, destination: str) -> str:
    """A hard link where the disk allows: no checkpoint file is ever written in place (a save swaps a new folder in),
    so a link is as good as a copy and costs no space."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def recover_checkpoints(checkpoints: Path) -> None:
    """Undo what a run killed while saving left behind: a checkpoint's previous copy put back where a kill
    came between the two renames of a swap (the new one is then missing), else a stale previous copy or
    temporary folder removed. Only for a run folder this process holds: a live run is mid-swap there too."""
    if not checkpoints.is_dir():
        return
    for path in sorted(checkpoints.iterdir()):
        if path.suffix not in (".old", ".tmp"):
            continue
        _refuse_link(path)
        current = path.with_suffix("")
        if path.suffix == ".old" and not current.exists():
            os.replace(path, current)  # a complete copy: it is deleted only once the new one is in place
        else:
            shutil.rmtree(path)


def write_failure(err: Exception, folder: Path) -> str:
    """What went wrong with a write, in words: torch reports a full disk as an `enforce fail` RuntimeError."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    free = shutil.disk_usage(folder).free
    if free < 64 * 2**20:
        return f"No space left on device ({free // 2**20} MiB free in {folder})"
    return str(err).strip().splitlines()[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    sums = {p.relative_to(folder).as_posix(): _sha256(p) for p in files}
    (folder / CHECKSUMS).write_text(json.dumps({"sha256": sums}, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Every file listed in checksums.json is there with the SHA-256 it was saved with (flipped bits in the
    weights would otherwise load and score silently). A checkpoint of a warmgen older than the list has none."""
    listed = folder / CHECKSUMS
    if not listed.is_file():
        return
    try:
        sums = json.loads(listed.read_text(encoding="utf-8"))["sha256"]
        items = list(sums.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RunFolderError(f"{listed}: damaged (not the JSON list of SHA-256 sums warmgen writes)") from None
    missing = [str(folder / name) for name, _ in items if not (folder / name).is_file()]
    if missing:
        raise RunFolderError(f"{', '.join(missing)}: missing from the checkpoint ({CHECKSUMS} lists it)")
    for name, expected in items:
        path = folder / name
        if _sha256(path) != expected:
            raise RunFolderError(f"{path}: damaged or changed since it was saved: its SHA-256 differs from the one in "
                                 f"{CHECKSUMS}; train again, or resume from another checkpoint")


def load_checkpoint(folder: Path, trusting: ModelConfig | None = None):
    """(model, tokenizer, sep_id, config) from a checkpoint folder written by `save_checkpoint`, after checking its files.

    `trusting` is the caller's model settings, whose `trust_remote_code` and `allow_bin_weights` decide
    (for a LoRA checkpoint's base model); None trusts nothing. The checkpoint's own weights are safetensors.
    """
    verify_checkpoint(folder)
    config = load_config(folder / CONFIG_NAME)
    if config.warmup.draft_from and (folder / DRAFTER / CONFIG_NAME).is_file():
        config.warmup.draft_from = str(folder / DRAFTER)  # the copy it carries: the original may be gone or elsewhere
    trusting = trusting or ModelConfig()
    config.model.trust_remote_code, config.model.allow_bin_weights = trusting.trust_remote_code, trusting.allow_bin_weights
    if (folder / "adapter_config.json").is_file():
        model, tokenizer, sep_id = load_adapter(config.model, folder)
    else:
        model, tokenizer = load_pretrained(str(folder), dataclasses.replace(config.model, revision=None, allow_bin_weights=False))
        sep_id = tokenizer.convert_tokens_to_ids(SEP)
    portable.restore_chat_template(folder, tokenizer)
    return model, tokenizer, sep_id, config


def rng_state() -> dict:
    """Every random generator's state as tensors and plain values, so it loads with weights_only=True."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)


# Data-only classes that DeepSpeed's ZeRO optimizers keep in their state: rebuilding them runs no code of the file's.
DEEPSPEED_STATE = {"deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
                   "deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.utils.tensor_fragment.fragment_address"}


def load_trainer_state(path: Path) -> TrainState:
    return TrainState(**_load_state_dict(path))


def _load_state_dict(path: Path) -> dict:
    """`trainer_state.pt` read as tensors and plain values only: a pickle that would build any other
    object (and so could run code) is refused, never executed."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if unsafe and set(unsafe) <= DEEPSPEED_STATE:
            classes = [getattr(importlib.import_module(module), name) for module, _, name in (n.rpartition(".") for n in unsafe)]
            with torch.serialization.safe_globals(classes):
                return torch.load(path, weights_only=True)
        raise RunFolderError(f"{path}: refused to load: it holds more than tensors and plain values "
                             f"({', '.join(unsafe) or 'unknown objects'}), so loading it could run code; it was not written "
                             "by this version of warmgen") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise RunFolderError(f"{path}: cannot be read, the file is damaged or incomplete ({str(err).strip().splitlines()[0]}); "
                             f"delete {path.parent} to train again from the start") from None
