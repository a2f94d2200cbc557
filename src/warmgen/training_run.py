"""A training run as the loop sees it: the model, data, optimizer, schedule and objectives set up once
(`prepare`), the counters the loop advances, and what it does between steps: log, evaluate on dev, save
the best, last and step-N checkpoints (train.py runs the loop)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from tqdm.auto import tqdm

from . import diagnostics, provenance
from .batching import tokenize
from .checkpoint import TrainState, rng_state, save_checkpoint, set_rng_state
from .compat import enable_activation_checkpointing
from .config import WarmupConfig
from .distributed import Processes
from .drafts import drafter_of
from .errors import ConfigError
from .evaluate import evaluate
from .layout import Layout, make_layout
from .methods import decodes_with_warmup, learns_warmups
from .models import count_parameters, has_dropout
from .objectives import Objectives
from .reference import check_reference, needs_reference, start_reference
from .rundir import best_checkpoint, last_checkpoint
from .runlog import RunLog
from .start import check_warm_start, warm_start_header
from .tasks import Task
from .warmup import merges_repeats


@dataclass
class Run:
    """What a run trains with, set up once by `_prepare`; `state` holds the counters the loop advances
    (its optimizer, scheduler and RNG fields are filled in only when a checkpoint is saved)."""

    config: WarmupConfig
    procs: Processes
    run_dir: Path
    task: Task
    model: Any
    tokenizer: Any
    layout: Layout
    data: list
    optimizer: Any
    scheduler: Any
    objectives: Any  # Objectives; let go of (None) before the final evaluation, as the model is
    state: TrainState
    parameters: int
    header: dict
    global_batch: int
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    lengths: list | None
    logs: RunLog | None = None  # the main process's
    callbacks: list = dataclasses.field(default_factory=list)  # transformers-style TrainerCallbacks (WarmupTrainer's)
    control: SimpleNamespace = dataclasses.field(default_factory=lambda: SimpleNamespace(should_training_stop=False))
    stopped_early: str | None = None  # why training stopped before its planned steps (stop_reason), else None

    def log(self, row: dict) -> None:
        if self.logs is not None:
            self.logs.log(row)
            if "loss" in row:
                self.notify("on_log", logs=row)

    def checkpoint_state(self, rng: list, optimizer_state: dict | list | None) -> TrainState:
        memory = self.objectives.memory
        return dataclasses.replace(self.state, optimizer=optimizer_state, scheduler=self.scheduler.state_dict(), rng=rng,
                                   warmup_memory=memory.state_dict() if memory is not None else None, loss_scaler=self.procs.loss_scaler_state())

    def save(self, folder: Path, state: TrainState | None, weights: dict | None) -> None:
        save_checkpoint(folder, self.model, self.tokenizer, self.config, state, weights, drafter_of(self.config))

    def evaluate_and_save(self) -> None:
        """Dev evaluation, `best` when it improved, and `last`. Every process calls it: the gathers below
        (and, for a sharded model, evaluation) need them all."""
        procs, s, task = self.procs, self.state, self.task
        rng = procs.gather(rng_state())  # every process's RNG, so a resumed run samples the same
        row, improved = {"step": s.step, "epoch": s.step / self.steps_per_epoch, "train_seconds": s.train_seconds}, False
        has_dev = bool(task.splits.get("dev"))
        # An SFT warm start's model writes no warmups yet: it is scored as SFT (the curve goes on from the SFT run's), and
        # only a model decoded as the method decodes can be the method's best checkpoint.
        as_method = s.step > self.config.warmup.sft_warm_start_steps or not decodes_with_warmup(self.config)
        if has_dev and procs.evaluates:
            use_warmup = decodes_with_warmup(self.config) and as_method
            scores, _ = evaluate(self.model, self.layout, task, "dev", self.config, use_warmup=use_warmup)
            row.update({f"dev/{k}": v for k, v in scores.items() if not k.endswith("signature") and k != "skipped"})
            row["dev/decoded_with_warmup"] = use_warmup
            value = scores[task.primary_metric]
            best = s.best["metric"]
            improved = as_method and (best is None or (value > best if task.greater_is_better else value < best))
            if improved:
                s.best = {"metric": value, "step": s.step}
            if as_method:
                s.evals_since_best = 0 if improved else s.evals_since_best + 1
        weights, optimizer_state = procs.full_state_dict(self.model), procs.optimizer_state(self.model, self.optimizer)
        if procs.is_main:
            if improved:
                self.save(best_checkpoint(self.run_dir), None, weights)
            if has_dev:
                best = "decoded as SFT: the warm start" if not as_method else f"best {s.best['metric']:.4f} at step {s.best['step']}"
                tqdm.write(f"step {s.step}: dev {task.primary_metric} {value:.4f} ({best})")
            self.save(last_checkpoint(self.run_dir), self.checkpoint_state(rng, optimizer_state), weights)
            if has_dev:
                self.notify("on_evaluate", metrics={f"eval_{k.removeprefix('dev/')}": v for k, v in row.items() if k.startswith("dev/")})
            self.notify("on_save")
            self.log(row)
        procs.barrier()

    def save_resumable(self, folder: Path) -> None:
        """A checkpoint to resume or branch from, without an evaluation: `checkpoints/step-N` (train.save_checkpoints_at)
        or `last` (train.save_every). Every process calls it, as evaluate_and_save."""
        rng = self.procs.gather(rng_state())
        weights, optimizer_state = self.procs.full_state_dict(self.model), self.procs.optimizer_state(self.model, self.optimizer)
        if self.procs.is_main:
            self.save(folder, self.checkpoint_state(rng, optimizer_state), weights)
        self.procs.barrier()

    def close_logs(self) -> None:
        if self.logs is not None:
            self.logs.close()

    def stop_reason(self) -> str | None:
        """Why training stops before its planned steps, one answer for all processes: train.early_stopping_patience
        evaluations in a row without a better dev score, or a callback that set control.should_training_stop."""
        patience = self.config.train.early_stopping_patience
        if not (patience or self.callbacks):
            return None
        flags = self.procs.sum([float(0 < patience <= self.state.evals_since_best), float(self.control.should_training_stop)])
        if flags[0] > 0:
            return f"dev {self.task.primary_metric} did not improve in {patience} evaluations (train.early_stopping_patience)"
        return "a callback set control.should_training_stop" if flags[1] > 0 else None

    def notify(self, event: str, **kwargs) -> None:
        """The callbacks' `event` method (transformers' TrainerCallback: on_log, on_evaluate, on_save), with the run's
        args, a state (global_step, epoch) and the control whose should_training_stop ends training."""
        state = SimpleNamespace(global_step=self.state.step, epoch=self.state.step / self.steps_per_epoch)
        for callback in self.callbacks:
            handler = getattr(callback, event, None)
            if handler is not None:
                handler(self.config, state, self.control, **kwargs)

    def out_of_time(self) -> bool:
        # One answer for all processes: one stopping alone would leave the others waiting in a collective.
        t = self.config.train
        return t.max_train_seconds > 0 and self.procs.sum(float(self.state.train_seconds >= t.max_train_seconds)).item() > 0


def prepare(config: WarmupConfig, procs: Processes, run_dir: Path, task: Task, model, tokenizer, sep_id, state) -> Run:
    """The model on its device, the tokenised data, AdamW and its schedule, the objectives, the counters."""
    model.to(procs.device)
    if config.train.gradient_checkpointing:  # scoring then runs each row whole (layout.py): no cache to share
        enable_activation_checkpointing(model)
    procs.shard(model)  # FSDP when the accelerate config asks for it
    layout = make_layout(model, tokenizer, sep_id, config)
    data, truncation = tokenize(layout, task.split("train"), config.data.on_overlength)
    t = config.train
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # No empty group (LoRA has no 1-d weights): DeepSpeed drops it, and the schedule would then count one group too many.
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2))
    global_batch = t.batch_size * procs.world
    if global_batch * t.gradient_accumulation_steps > len(data):
        raise ConfigError(
            f"one optimizer step needs train.batch_size {t.batch_size} x {procs.world} process(es) x "
            f"train.gradient_accumulation_steps {t.gradient_accumulation_steps} = {global_batch * t.gradient_accumulation_steps} "
            f"examples, but there are {len(data)} training examples: lower the batch size or accumulation")
    batches_per_epoch = math.ceil(len(data) / global_batch)
    steps_per_epoch = math.ceil(batches_per_epoch / t.gradient_accumulation_steps)
    total_steps = t.max_steps or math.ceil(t.epochs * steps_per_epoch)
    check_warm_start(config, total_steps)
    scheduler = linear_schedule(optimizer, min(t.lr_warmup_steps, total_steps), total_steps)
    parameters = count_parameters(model)  # before ZeRO-3 partitions the weights
    procs.prepare_optimizer(model, optimizer, scheduler, t)  # DeepSpeed ZeRO when the accelerate config asks for it
    check_reference(config, procs.sharded)
    make_reference = (lambda: start_reference(model, tokenizer, config, run_dir, procs.is_main, procs.device)) if needs_reference(config) else None
    objectives = Objectives(config, layout, procs, make_reference)
    if state is None:
        state = TrainState(step=0, epoch=0, batch_index=0, train_seconds=0.0, generated_tokens=0, skipped_steps=0, optimizer={},
                           scheduler={}, best={"metric": None, "step": None}, rng=[])
    else:
        procs.load_optimizer_state(model, optimizer, state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        set_rng_state(state.rng[procs.rank])
        if objectives.memory is not None and state.warmup_memory is not None:
            objectives.memory.load_state_dict(state.warmup_memory)
        procs.load_loss_scaler(state.loss_scaler)
        state = dataclasses.replace(state, optimizer={}, scheduler={}, rng=[], warmup_memory=None, loss_scaler=None)  # loaded: not kept twice
    header = {"step": 0, "event": "start", "parameters": parameters, "train_examples": len(data),
              "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "processes": procs.world, "sharded": procs.sharded,
              "deepspeed": procs.engine is not None, **truncation, "family": layout.family, "dropout": has_dropout(model)}
    if learns_warmups(config):
        header.update(merge_repeats=merges_repeats(config.warmup, header["dropout"]), **warm_start_header(config))
    return Run(config, procs, run_dir, task, model, tokenizer, layout, data, optimizer, scheduler, objectives, state, parameters,
               header, global_batch, batches_per_epoch, steps_per_epoch, total_steps,
               [len(source) + len(target) for source, target in data] if t.group_by_length else None)


def open_logs(run: Run, resume: bool, warm_start_log: list[dict]) -> None:
    """metrics.jsonl and samples.jsonl: continued from the resumed step, or new; the trackers."""
    if not run.procs.is_main:
        return
    run.logs = RunLog(run.run_dir, run.state.step if resume else None, run.config.train.report_to, run.config.to_dict())
    started = provenance.segment(run.procs.device)
    if not resume:
        h = run.header
        print(f"{run.config.method}: {h['parameters']:,} parameters, {h['train_examples']:,} training examples, {h['total_steps']:,} "
              f"steps on {h['processes']} process(es); the log is {run.run_dir}/metrics.jsonl")
        for row in [{**run.header, **started}] + warm_start_log:  # the SFT run's training log of the steps this run starts after
            run.log(row)
        run.logs.warn(run.state.step, "from_scratch", diagnostics.from_scratch(run.config))
    elif run.state.step < run.total_steps:  # a finished run shown again trains nothing: its log stays as it was
        run.log({"step": run.state.step, "event": "resume", **started})


def linear_schedule(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' get_linear_schedule_with_warmup, the same arithmetic to the last bit: the learning rate rises
    linearly for `warmup_steps`, then falls linearly to 0 at `total_steps`. Not imported from transformers.optimization,
    which imports peft through transformers.trainer_utils: seconds at the start of every run."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
