"""The training loop: batches, the method's objective, AdamW, evaluation, checkpoints, logs.

`_train` reads top to bottom: the starting model (start.py), the run's set-up (`Run`), the loop, the
final evaluation. Which objective a step trains is objectives.py's; the run folder is rundir.py's.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup, set_seed

from . import diagnostics, provenance
from .batching import epoch_order, tokenize
from .checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .compat import enable_activation_checkpointing
from .config import ConfigError, WarmupConfig
from .distributed import Processes, check_launch
from .errors import TrainingError
from .evaluate import evaluate, write_eval
from .layout import make_layout
from .methods import decodes_with_warmup, learns_warmups
from .models import count_parameters, has_dropout
from .objectives import Objectives
from .provenance import git_commit, library_versions
from .reference import check_reference, needs_reference, start_reference
from .rundir import (
    after_bad_steps,
    best_checkpoint,
    clear_run_folder,
    eval_folder,
    hold_folder,
    last_checkpoint,
    results_file,
    run_config_file,
    step_checkpoint,
)
from .runlog import RunLog, progress_postfix, read_training_log, window_stats
from .start import starting_model
from .tasks import Task, load_task
from .trackers import check_installed
from .validation import validate
from .warmup import merges_repeats

# ----------------------------------------------------------------------------- the run


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
    layout: Any
    data: list
    optimizer: Any
    scheduler: Any
    objectives: Objectives
    state: TrainState
    parameters: int
    header: dict
    global_batch: int
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    lengths: list | None
    logs: RunLog | None = None  # the main process's

    def log(self, row: dict) -> None:
        if self.logs is not None:
            self.logs.log(row)

    def checkpoint_state(self, rng: list, optimizer_state: dict) -> TrainState:
        memory = self.objectives.memory
        return dataclasses.replace(self.state, optimizer=optimizer_state, scheduler=self.scheduler.state_dict(), rng=rng,
                                   warmup_memory=memory.state_dict() if memory is not None else None, loss_scaler=self.procs.loss_scaler_state())

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
        weights, optimizer_state = procs.full_state_dict(self.model), procs.optimizer_state(self.model, self.optimizer)
        if procs.is_main:
            if improved:
                save_checkpoint(best_checkpoint(self.run_dir), self.model, self.tokenizer, self.config, None, weights)
            if has_dev:
                best = "decoded as SFT: the warm start" if not as_method else f"best {s.best['metric']:.4f} at step {s.best['step']}"
                tqdm.write(f"step {s.step}: dev {task.primary_metric} {value:.4f} ({best})")
            save_checkpoint(last_checkpoint(self.run_dir), self.model, self.tokenizer, self.config, self.checkpoint_state(rng, optimizer_state), weights)
            self.log(row)
        procs.barrier()

    def save_resumable(self, folder: Path) -> None:
        """A checkpoint to resume or branch from, without an evaluation: `checkpoints/step-N` (train.save_checkpoints_at)
        or `last` (train.save_every). Every process calls it, as evaluate_and_save."""
        rng = self.procs.gather(rng_state())
        weights, optimizer_state = self.procs.full_state_dict(self.model), self.procs.optimizer_state(self.model, self.optimizer)
        if self.procs.is_main:
            save_checkpoint(folder, self.model, self.tokenizer, self.config, self.checkpoint_state(rng, optimizer_state), weights)
        self.procs.barrier()

    def close_logs(self) -> None:
        if self.logs is not None:
            self.logs.close()

    def out_of_time(self) -> bool:
        # One answer for all processes: one stopping alone would leave the others waiting in a collective.
        t = self.config.train
        return t.max_train_seconds > 0 and self.procs.sum(float(self.state.train_seconds >= t.max_train_seconds)).item() > 0


def _prepare(config: WarmupConfig, procs: Processes, run_dir: Path, task: Task, model, tokenizer, sep_id, state) -> Run:
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
    if learns_warmups(config) and config.warmup.sft_warm_start_from and config.warmup.sft_warm_start_steps >= total_steps:
        raise ConfigError(f"warmup.sft_warm_start_steps {config.warmup.sft_warm_start_steps} leaves no warmup step: the run has {total_steps}")
    scheduler = get_linear_schedule_with_warmup(optimizer, min(t.lr_warmup_steps, total_steps), total_steps)
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
        header["merge_repeats"] = merges_repeats(config.warmup, header["dropout"])
        if config.warmup.sft_warm_start_from:
            header["sft_warm_start_from"] = config.warmup.sft_warm_start_from
    return Run(config, procs, run_dir, task, model, tokenizer, layout, data, optimizer, scheduler, objectives, state, parameters,
               header, global_batch, batches_per_epoch, steps_per_epoch, total_steps,
               [len(source) + len(target) for source, target in data] if t.group_by_length else None)


def _open_logs(run: Run, resume: bool, warm_start_log: list[dict]) -> None:
    """metrics.jsonl and samples.jsonl: continued from the resumed step, or new; the trackers."""
    if not run.procs.is_main:
        return
    run.logs = RunLog(run.run_dir, run.state.step if resume else None, run.config.train.report_to, run.config.to_dict())
    started = provenance.segment(run.procs.device)
    if not resume:
        print(json.dumps(run.header))
        for row in [{**run.header, **started}] + warm_start_log:  # the SFT run's training log of the steps this run starts after
            run.log(row)
        run.logs.warn(run.state.step, "from_scratch", diagnostics.from_scratch(run.config))
    else:
        run.log({"step": run.state.step, "event": "resume", **started})


# ----------------------------------------------------------------------------- the loop


def _train_loop(run: Run, warm_started: bool) -> None:
    config, procs, s, t = run.config, run.procs, run.state, run.config.train
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    run.model.train()
    progress = tqdm(total=run.total_steps, initial=s.step, desc=f"{config.method}", dynamic_ncols=True, mininterval=1.0,
                    disable=not procs.is_main)
    accumulated: dict[str, float] = {}
    window: list[tuple] = []  # (gradient norm, clipped ratio) of each step since the last logged one
    micro, bad_batch, consecutive_bad = 0, False, 0
    stopped_by_time = run.out_of_time()  # a run resumed after its budget ran out goes straight to the final evaluation
    if (warm_started and t.eval_every and s.step % t.eval_every == 0) or run.total_steps == 0:
        run.evaluate_and_save()  # the evaluation a run that trained its own warm start makes here; a zero-shot run's only one
    tick, end = time.time(), min(run.total_steps, t.stop_after_step or run.total_steps)
    while s.step < end and not stopped_by_time:
        order = epoch_order(len(run.data), config.seed, s.epoch, run.lengths, run.global_batch)
        while s.batch_index < run.batches_per_epoch and s.step < end:
            global_ids = order[s.batch_index * run.global_batch : (s.batch_index + 1) * run.global_batch]
            s.batch_index += 1
            if len(global_ids) < procs.world:
                continue  # a last batch too small to give every process an example is dropped
            ids = global_ids[procs.rank :: procs.world]
            sources, targets = [run.data[i][0] for i in ids], [run.data[i][1] for i in ids]
            objective_of = run.objectives.at(s.step)
            with procs.autocast():  # forward passes only: backward runs outside autocast, as torch recommends
                step_objective = objective_of(model, ids, sources, targets)
            counted = procs.sum([step_objective.input_tokens, step_objective.generated_tokens]).tolist()
            s.num_tokens, s.generated_tokens = s.num_tokens + int(counted[0]), s.generated_tokens + int(counted[1])
            # Per-token loss over the global batch: this process's share, so summed gradients are exact.
            loss = -step_objective.objective / procs.sum(step_objective.tokens).to(step_objective.objective.dtype)
            global_loss = procs.sum(loss.detach()).item()
            # Backward even a NaN/inf loss (the step is then skipped): DeepSpeed reduces gradients during backward.
            stats = step_objective.stats
            backward_started = time.perf_counter()
            procs.backward(loss / t.gradient_accumulation_steps)
            stats["time/backward"] = time.perf_counter() - backward_started
            if math.isfinite(global_loss):
                stats["target_tokens"] = float(sum(len(target) + 1 for target in targets))
                for key, value in {"loss": global_loss, **procs.mean_stats(stats)}.items():
                    accumulated[key] = accumulated.get(key, 0.0) + value / t.gradient_accumulation_steps
            else:
                bad_batch = True
            micro += 1
            if micro % t.gradient_accumulation_steps and s.batch_index < run.batches_per_epoch:
                continue
            micro = 0
            lr = optimizer.param_groups[0]["lr"]  # the schedule's, or lower under lr_decay_by_time
            optimizer_started = time.perf_counter()
            grad_norm, outcome = procs.optimizer_step(model, optimizer, scheduler, t.max_grad_norm, skip=bad_batch)
            if outcome != "stepped":
                # The whole optimizer step was skipped; after too many in a row, stop with `last` intact. An fp16
                # overflow that halved the loss scale (`rescaled`) is the scaler finding its scale, not a bad step.
                accumulated, bad_batch = {}, False
                s.skipped_steps += 1
                if outcome == "rescaled":
                    continue
                consecutive_bad += 1
                tqdm.write(f"step {s.step + 1}: NaN/inf loss or gradient, optimizer step skipped ({consecutive_bad} in a row)")
                if consecutive_bad >= t.max_bad_steps:
                    raise TrainingError(f"{consecutive_bad} optimizer steps in a row had a NaN/inf loss or gradient, so training "
                                        f"stopped. {after_bad_steps(run.run_dir)}")
                continue
            consecutive_bad = 0
            accumulated["time/optimizer"] = time.perf_counter() - optimizer_started  # with gradient synchronisation and clipping
            # Training time runs from the end of the last step (or evaluation) to here.
            step_seconds = time.time() - tick
            s.train_seconds += step_seconds
            s.step += 1
            if t.lr_decay_by_time and t.max_train_seconds:
                # The processes' mean time, so that every process steps with the same rate.
                time_left = max(0.0, 1 - procs.sum(s.train_seconds).item() / procs.world / t.max_train_seconds)
                for group in optimizer.param_groups:
                    group["lr"] = min(group["lr"], group["initial_lr"] * time_left)
            stopped_by_time = s.step < run.total_steps and run.out_of_time()
            progress.update(1)
            progress.set_postfix(**progress_postfix(accumulated))
            window.append((grad_norm, accumulated.get("completions/clipped_ratio")))  # every step's, between logged ones too
            if s.step % t.log_every == 0 or s.step == run.total_steps or stopped_by_time:
                # The machine's 1-minute load average: times are only comparable between runs that had the CPU alone.
                run.log({"step": s.step, "epoch": s.step / run.steps_per_epoch, "learning_rate": lr, "grad_norm": grad_norm,
                         "sft": objective_of is run.objectives.sft, "num_tokens": s.num_tokens, "skipped_steps": s.skipped_steps,
                         "time/step": step_seconds, "load_average": os.getloadavg()[0], **procs.loss_scale(), **accumulated,
                         **window_stats(window)})
                window = []
            if step_objective.warmups is not None and t.samples_every and s.step % t.samples_every == 0 and procs.is_main:
                run.logs.log_samples(s.step, [run.task.split("train")[i] for i in ids], step_objective.warmups, run.layout)
            accumulated = {}
            eval_due = s.step % t.eval_every == 0 if t.eval_every else s.batch_index >= run.batches_per_epoch
            if eval_due or s.step == run.total_steps or stopped_by_time:
                run.evaluate_and_save()
            elif t.save_every and s.step % t.save_every == 0:
                run.save_resumable(last_checkpoint(run.run_dir))
            if s.step in t.save_checkpoints_at or s.step == t.stop_after_step:
                run.save_resumable(step_checkpoint(run.run_dir, s.step))
            if stopped_by_time:
                tqdm.write(f"step {s.step}: time budget train.max_train_seconds = {t.max_train_seconds:g} reached "
                           f"({s.train_seconds:.0f} s of training), stopping before step {run.total_steps}")
                break
            tick = time.time()
        if s.batch_index >= run.batches_per_epoch:
            s.epoch, s.batch_index = s.epoch + 1, 0
    progress.close()


# ----------------------------------------------------------------------------- the final evaluation


def _final_results(run: Run) -> dict:
    """The best checkpoint (else the last) decoded on dev and test; results.json."""
    config, s = run.config, run.state
    run.close_logs()
    best_dir = best_checkpoint(run.run_dir)
    final_dir = best_dir if best_dir.exists() else last_checkpoint(run.run_dir)
    run.model = run.optimizer = run.scheduler = run.objectives = None  # gone before the best is loaded: never two models at once
    gc.collect()
    final_model, final_tokenizer, final_sep, _ = load_checkpoint(final_dir, config.model)
    log = read_training_log(run.run_dir)
    final_model.to(run.procs.device)
    final_layout = make_layout(final_model, final_tokenizer, final_sep, config)
    results = {"method": config.method, "checkpoint": str(final_dir), "best_step": s.best["step"], "train_seconds": s.train_seconds,
               "steps": s.step, "stopped_by_time_budget": s.step < run.total_steps,
               "epochs": s.step / run.steps_per_epoch, "seconds_per_epoch": s.train_seconds * run.steps_per_epoch / max(s.step, 1),
               "parameters": run.parameters, "generated_tokens": s.generated_tokens, "skipped_steps": s.skipped_steps,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "versions": library_versions(), "git_commit": git_commit(), **provenance.run_provenance(log),
               "warnings": diagnostics.logged_warnings(log), "splits": {}}
    for split in ("dev", "test"):
        if run.task.splits.get(split):
            scores, predictions = evaluate(final_model, final_layout, run.task, split, config, use_warmup=decodes_with_warmup(config))
            write_eval(eval_folder(run.run_dir, split), scores, predictions,
                       {"checkpoint": str(final_dir), "split": split, "config": config.to_dict()})
            results["splits"][split] = scores
    results_file(run.run_dir).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results


# ----------------------------------------------------------------------------- entry point


def train(config: WarmupConfig, resume: bool = False, overwrite: str | None = None, model=None, given: dict | None = None) -> dict:
    """Train, keep best/last checkpoints, evaluate the best on dev and test; return results (None when
    train.stop_after_step stopped it part way).

    `model`: a (model, tokenizer) pair to train instead of loading `config.model.name` (not when resuming); `given`:
    in-memory splits instead of the configured files. Both from `WarmupTrainer`. Under `accelerate launch` / torchrun
    each process trains on `batch_size` examples of every global batch; only the main process logs, saves, evaluates
    the final checkpoint and returns results (the others None); dev evaluation runs on every process of a sharded model.

    A folder holding an earlier run is refused unless `resume` or `overwrite` says what to do (`clear_run_folder`).
    """
    validate(config)  # fields set one by one in Python are checked each alone
    check_installed(config.train.report_to)
    check_launch(config)
    procs = Processes()
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = hold_folder(run_dir, "warmgen train") if procs.is_main else None
    try:
        if procs.is_main:
            clear_run_folder(run_dir, resume, overwrite)
        return _train(config, resume, procs, run_dir, model, given)
    finally:
        if lock is not None:  # also after an error, so the same process (a notebook) can resume at once
            lock.close()


def _train(config: WarmupConfig, resume: bool, procs: Processes, run_dir: Path, given_model, given: dict | None) -> dict | None:
    set_seed(config.seed)  # Python's, NumPy's and torch's generators
    task = load_task(config, given)
    model, tokenizer, sep_id, state, warm_start_log = starting_model(config, resume, procs, run_dir, task.split("train"), given_model)
    if procs.is_main:
        config.save(run_config_file(run_dir))
    run = _prepare(config, procs, run_dir, task, model, tokenizer, sep_id, state)
    del model  # `run` holds it now, and lets go of it before the final evaluation
    _open_logs(run, resume, warm_start_log)
    _train_loop(run, warm_started=state is not None and not resume)
    procs.finish()
    if run.state.step == config.train.stop_after_step < run.total_steps:  # stopped part way, as asked: nothing to evaluate yet
        print(f"stopped after step {run.state.step} of {run.total_steps} (train.stop_after_step): {step_checkpoint(run_dir, run.state.step)}")
        return run.close_logs()
    return _final_results(run) if procs.is_main else None
