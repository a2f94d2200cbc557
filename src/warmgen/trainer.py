"""The Python API, in the shape of TRL's trainers; `warmgen train` runs the same loop.

    from warmgen import WarmupConfig, WarmupTrainer, generate, load_run

    args = WarmupConfig(output_dir="runs/mine", train={"epochs": 3})
    trainer = WarmupTrainer(model="bart-mini", args=args, train_dataset=rows, eval_dataset=dev_rows)
    trainer.train()                             # TrainOutput; trainer.model: the best checkpoint's; trainer.results
    trainer.evaluate(test_rows)                 # or "dev" / "test"
    generate(trainer.model, trainer.tokenizer, ["hello"])   # [(warmup, output)], decoded as the run does
    model, tokenizer, config = load_run("runs/mine")        # a finished run, later

`model` is a name (a preset, a local folder, a hub id: `model.name`), a loaded `PreTrainedModel`
with its `tokenizer` (TRL's `processing_class`), or None for `args.model.name`. Datasets are lists of
dicts, `datasets.Dataset`s, pandas DataFrames or file paths, with the fields `data.source_field` /
`data.target_field` (`input` / `target`). `peft_config` (a LoraConfig) sets `model.lora_*`;
`compute_metrics(predictions, references)` adds scores to every evaluation. Checkpoints,
`resume_from_checkpoint` and the run folder are the CLI's.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from transformers import PreTrainedTokenizerBase
from transformers.trainer_utils import TrainOutput

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig, WarmupConfig
from .decode import decode
from .drafts import draft_warmups, drafter_of
from .errors import ConfigError, DataError
from .evaluate import evaluate
from .layout import make_layout
from .methods import decodes_with_warmup
from .models import SEP
from .rundir import checkpoint_folder
from .runlog import read_training_log
from .tasks import DATASET_NAMES, load_task
from .train import train

SPLIT_OF = {argument: split for split, argument in DATASET_NAMES.items()}


class WarmupTrainer:
    """Trains one model with Warmup Generations (or SFT, `args.method = "sft"`, or pause tokens, "pause") as `args` says."""

    def __init__(self, model=None, tokenizer=None, args: WarmupConfig | None = None, train_dataset=None, eval_dataset=None,
                 test_dataset=None, processing_class=None, peft_config=None, compute_metrics=None, callbacks=None):
        if processing_class is not None:  # TRL's name for the tokenizer
            if tokenizer is not None and tokenizer is not processing_class:
                raise ConfigError("WarmupTrainer: give the tokenizer once, as tokenizer or as processing_class")
            tokenizer = processing_class
        if args is not None and not isinstance(args, WarmupConfig):
            raise ConfigError(f"args must be a WarmupConfig, not {type(args).__name__}")
        self.args = copy.deepcopy(args) if args is not None else WarmupConfig()  # the caller's stays as it was
        if isinstance(model, (str, os.PathLike)):
            self.args.model.name = str(model)
            model = None
        if model is not None and tokenizer is None:
            raise ConfigError("WarmupTrainer: pass the model's tokenizer with the model")
        if tokenizer is not None:
            check_tokenizer(tokenizer, "WarmupTrainer")
        if model is not None:
            # Saved in config.yaml; LoRA checkpoints rebuild their base from it at eval and resume.
            self.args.model.name = getattr(model, "name_or_path", "") or self.args.model.name
        self.model, self.tokenizer = model, tokenizer
        self.given = {}
        for argument, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset), ("test_dataset", test_dataset)):
            if isinstance(dataset, (str, os.PathLike)):
                setattr(self.args.data, f"{SPLIT_OF[argument]}_file", str(dataset))
            elif dataset is not None:
                self.given[SPLIT_OF[argument]] = dataset
        if peft_config is not None:
            use_peft_config(self.args, peft_config)
        self.compute_metrics = compute_metrics  # (predictions, references) -> {name: value}, at every evaluation
        self.callbacks = list(callbacks or [])  # transformers' TrainerCallbacks: on_log, on_evaluate, on_save
        self.results: dict | None = None
        self._decoding = self.args  # after train(): args with the drafter the best checkpoint carries

    def train(self, resume_from_checkpoint: bool | str | os.PathLike = False, overwrite: str | None = None) -> TrainOutput | None:
        """Train; return transformers' TrainOutput (global_step, training_loss, metrics), with `model` then the best
        checkpoint's model (on dev, else the last) and `results` set.

        `resume_from_checkpoint` (True, or the run's own folder) continues the run in `args.output_dir`; `overwrite`
        ("move" or "delete") says what to do with an earlier run there. None where nothing was evaluated (stopped part
        way with train.stop_after_step; the processes other than the main one of several).
        """
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):  # transformers' spelling: a checkpoint path
            wanted, run_dir = Path(resume_from_checkpoint).resolve(), Path(self.args.output_dir).resolve()
            if wanted not in (run_dir, run_dir / "checkpoints" / "last"):
                raise ConfigError(f"resume_from_checkpoint {resume_from_checkpoint!r}: warmgen continues the run in args.output_dir "
                                  f"({self.args.output_dir}) from its checkpoints/last; pass True, or set args.output_dir to "
                                  "that run's folder")
            resume_from_checkpoint = True
        given_model = (self.model, self.tokenizer) if self.model is not None and not resume_from_checkpoint else None
        self.results = train(self.args, resume=resume_from_checkpoint, overwrite=overwrite, model=given_model, given=self.given,
                             compute_metrics=self.compute_metrics, callbacks=self.callbacks)
        if self.results is None:
            return None
        self.model, self.tokenizer, _, saved = load_checkpoint(Path(self.results["checkpoint"]), self.args.model)
        # Decoded with the drafter the checkpoint carries (warmup.draft_from): the one args names may move or go.
        self._decoding = copy.deepcopy(self.args)
        self._decoding.warmup.draft_from = saved.warmup.draft_from
        self.model.warmgen_config = self._decoding  # generate() then decodes as this run does
        losses = [row["loss"] for row in self.state.log_history if "loss" in row]
        metrics = {"train_runtime": self.results["train_seconds"], "epoch": self.results["epochs"],
                   **{f"{'eval' if split == 'dev' else split}_{key}": value for split, scores in self.results["splits"].items()
                      for key, value in scores.items() if isinstance(value, (int, float))}}
        return TrainOutput(self.results["steps"], sum(losses) / len(losses) if losses else 0.0, metrics)

    @property
    def processing_class(self):
        return self.tokenizer

    @property
    def state(self) -> SimpleNamespace:
        """As transformers' TrainerState: `log_history` (the training log's rows), `global_step`, `best_metric`,
        `best_model_checkpoint` (None before training)."""
        results = self.results or {}
        return SimpleNamespace(log_history=read_training_log(Path(self.args.output_dir)), global_step=results.get("steps", 0),
                               best_metric=results.get("best_metric"),
                               best_model_checkpoint=results.get("checkpoint") if results.get("best_step") is not None else None)

    def save_model(self, output_dir: str | os.PathLike | None = None) -> None:
        """The trained (best) model, its tokenizer and warmgen's files as a checkpoint folder (`output_dir`, by default
        args.output_dir/final), loadable with load_run, `warmgen generate` and plain transformers."""
        if self.model is None or self.results is None:
            raise ConfigError("WarmupTrainer.save_model: train first (trainer.train())")
        save_checkpoint(Path(output_dir or Path(self.args.output_dir) / "final"), self.model, self.tokenizer, self.args, None,
                        drafter=drafter_of(self._decoding))

    def evaluate(self, dataset="dev") -> dict:
        """Scores of the trained model on a split ("dev", "test") or on a dataset (rows or a file path)."""
        if self.model is None or self.results is None:
            raise ConfigError("WarmupTrainer.evaluate: train first (trainer.train())")
        args, given = self.args, dict(self.given)
        if isinstance(dataset, str) and dataset in DATASET_NAMES:
            split = dataset
        else:  # scored as the test split
            split = "test"
            given.pop("test", None)
            if isinstance(dataset, (str, os.PathLike)):
                args = copy.deepcopy(args)
                args.data.test_file = str(dataset)
            else:
                given["test"] = dataset
        task = load_task(args, given, self.compute_metrics)
        layout = make_layout(self.model, self.tokenizer, self.tokenizer.convert_tokens_to_ids(SEP), self._decoding)
        scores, _ = evaluate(self.model, layout, task, split, self._decoding, use_warmup=decodes_with_warmup(self._decoding))
        return scores


class LoadedRun(NamedTuple):
    model: Any
    tokenizer: Any
    config: WarmupConfig


def load_run(path: str | os.PathLike, trust_remote_code: bool = False) -> LoadedRun:
    """(model, tokenizer, config) of a run folder (its best checkpoint, else its last) or a checkpoint folder, loaded
    as `warmgen eval` loads it; `generate(model, tokenizer, inputs)` then decodes as the run does. The checkpoint's own
    code runs only with `trust_remote_code` (the folder's model code; its carried custom_generate never)."""
    folder = checkpoint_folder(Path(path))
    model, tokenizer, _, config = load_checkpoint(folder, ModelConfig(trust_remote_code=trust_remote_code))
    model.warmgen_config = config
    return LoadedRun(model, tokenizer, config)


def generate(model, tokenizer, inputs: list[str | list[dict]], args: WarmupConfig | None = None) -> list[tuple[str | None, str]]:
    """(warmup, output) for each input (a text, or for a decoder-only model a chat: a list of
    role/content turns): the warmup first (None for an SFT model), then the answer, decoded as
    `args` says; by default as the run the model comes from (`load_run`, `WarmupTrainer.train`). An input longer
    than `args.data.max_source_length` tokens is cut to it, with a warning (an error under `data.on_overlength: error`)."""
    if args is None:
        args = getattr(model, "warmgen_config", None)
    if args is None:
        warnings.warn("generate: no args, and the model comes from no warmgen run (load_run, WarmupTrainer): decoding with "
                      "warmgen's defaults; pass the run's WarmupConfig as args", stacklevel=2)
        args = WarmupConfig()
    check_tokenizer(tokenizer, "generate")
    for number, text in enumerate(inputs, start=1):
        check_text(text, f"generate: input {number}")
    layout = make_layout(model, tokenizer, tokenizer.convert_tokens_to_ids(SEP), args)
    sources, cut = [], []
    for number, text in enumerate(inputs, start=1):
        ids, truncated = layout.source_ids(text)
        sources.append(ids)
        if truncated:
            cut.append(number)
    if cut:
        which = f"input{'s' if len(cut) > 1 else ''} {', '.join(map(str, cut[:10]))}{', ...' if len(cut) > 10 else ''}"
        message = (f"generate: {which} {'are' if len(cut) > 1 else 'is'} longer than data.max_source_length "
                   f"({args.data.max_source_length} tokens)")
        if args.data.on_overlength == "error":
            raise DataError(f"{message}: raise data.max_source_length, or set data.on_overlength truncate")
        warnings.warn(f"{message} and {'were' if len(cut) > 1 else 'was'} cut to it: raise data.max_source_length to read "
                      "more", stacklevel=2)
    was_training = model.training
    model.eval()
    pairs = []
    for start in range(0, len(sources), args.decode.batch_size):
        batch = sources[start : start + args.decode.batch_size]
        drafts = draft_warmups(layout, batch, args, model.device) if decodes_with_warmup(args) else None
        for generation in decode(model, layout, batch, decodes_with_warmup(args), args, drafts):
            warmup = None if generation.warmup is None else tokenizer.decode(generation.warmup)
            pairs.append((warmup, tokenizer.decode(generation.target, skip_special_tokens=True).strip()))
    model.train(was_training)
    return pairs


def use_peft_config(args: WarmupConfig, peft_config) -> None:
    """A peft LoraConfig as warmgen's LoRA settings (model.lora_*), which checkpoints keep; what they cannot say is refused."""
    from peft import LoraConfig

    if not isinstance(peft_config, LoraConfig):
        raise ConfigError(f"peft_config: warmgen trains LoRA adapters, a peft.LoraConfig; got {type(peft_config).__name__}")
    default = LoraConfig()
    unsupported = [name for name in ("bias", "use_rslora", "use_dora", "modules_to_save", "layers_to_transform", "fan_in_fan_out")
                   if getattr(peft_config, name) != getattr(default, name)]
    if unsupported:
        raise ConfigError(f"peft_config: warmgen takes r, lora_alpha, lora_dropout and target_modules; {', '.join(unsupported)} "
                          "would be lost")
    targets = peft_config.target_modules
    m = args.model
    m.lora_rank, m.lora_alpha, m.lora_dropout = peft_config.r, float(peft_config.lora_alpha), peft_config.lora_dropout
    m.lora_target_modules = None if targets in (None, "all-linear") else ([targets] if isinstance(targets, str) else sorted(targets))


def check_tokenizer(tokenizer, where: str) -> None:
    """A tokenizer object, not its name: the API loads nothing behind the caller's back."""
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        hint = f": load it first, AutoTokenizer.from_pretrained({tokenizer!r})" if isinstance(tokenizer, (str, os.PathLike)) else ""
        raise ConfigError(f"{where}: tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}{hint}")


def check_text(text, where: str) -> None:
    """An input to decode: a non-empty text (or chat turns) that is valid Unicode (invalid UTF-8 in a command-line
    argument reaches Python as lone surrogates)."""
    if isinstance(text, str):
        if not text.strip():
            raise DataError(f"{where} is empty: give a text to generate from")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(f"{where} is not valid UTF-8 text (character {err.start + 1})") from None
    elif not isinstance(text, list):
        raise DataError(f"{where}: expected a text or a list of chat turns, got {type(text).__name__}")
