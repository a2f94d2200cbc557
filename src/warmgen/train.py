"""The training loop: batches, the method's objective, AdamW, evaluation, checkpoints, logs.

`_train` reads top to bottom: the starting model (start.py), the run's set-up (training_run.py), the loop
in small named steps, the final evaluation. Which objective a step trains is objectives.py's; the run
folder is rundir.py's.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import time
from pathlib import Path

from accelerate.utils import set_seed
from tqdm.auto import tqdm

from . import diagnostics, provenance
from .batching import epoch_order
from .checkpoint import load_checkpoint
from .config import WarmupConfig
from .distributed import Processes, check_launch
from .errors import TrainingError
from .evaluate import evaluate, write_eval
from .layout import make_layout
from .methods import decodes_with_warmup
from .provenance import git_commit, library_versions
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
from .runlog import progress_postfix, read_training_log, window_stats
from .start import starting_model
from .tasks import load_task
from .trackers import check_installed
from .training_run import Run, open_logs, prepare
from .validation import validate

# ----------------------------------------------------------------------------- the run


# ----------------------------------------------------------------------------- the loop


def _train_loop(run: Run, warm_started: bool) -> None:
    config, procs, s, t = run.config, run.procs, run.state, run.config.train
    run.model.train()
    progress = tqdm(total=run.total_steps, initial=s.step, desc=f"{config.method}", dynamic_ncols=True, mininterval=1.0,
                    disable=not procs.is_main)
    accumulated: dict[str, float] = {}
    window: list[tuple] = []  # (gradient norm, clipped ratio) of each step since the last logged one
    micro, bad_batch, consecutive_bad = 0, False, 0
    stopped_by_time = run.out_of_time()  # a run resumed after its budget ran out goes straight to the final evaluation
    run.stopped_early = None if stopped_by_time else run.stop_reason()  # a resumed run that had stopped early
    stopping = stopped_by_time or run.stopped_early is not None
    if (warm_started and t.eval_every and s.step % t.eval_every == 0) or run.total_steps == 0:
        run.evaluate_and_save()  # the evaluation a run that trained its own warm start makes here; a zero-shot run's only one
    tick, end = time.time(), min(run.total_steps, t.stop_after_step or run.total_steps)
    while s.step < end and not stopping:
        order = epoch_order(len(run.data), config.seed, s.epoch, run.lengths, run.global_batch)
        while s.batch_index < run.batches_per_epoch and s.step < end:
            global_ids = order[s.batch_index * run.global_batch : (s.batch_index + 1) * run.global_batch]
            s.batch_index += 1
            if len(global_ids) < procs.world:
                continue  # a last batch too small to give every process an example is dropped
            ids = global_ids[procs.rank :: procs.world]
            objective_of = run.objectives.at(s.step)
            step_objective, finite = _micro_step(run, objective_of, ids, accumulated)
            bad_batch = bad_batch or not finite
            micro += 1
            if micro % t.gradient_accumulation_steps and s.batch_index < run.batches_per_epoch:
                continue
            micro = 0
            lr = run.optimizer.param_groups[0]["lr"]  # the schedule's, or lower under lr_decay_by_time
            optimizer_started = time.perf_counter()
            grad_norm, outcome = procs.optimizer_step(run.model, run.optimizer, run.scheduler, t.max_grad_norm, skip=bad_batch)
            if outcome != "stepped":
                accumulated, bad_batch = {}, False
                consecutive_bad = _skipped_step(run, outcome, consecutive_bad)
                continue
            consecutive_bad = 0
            accumulated["time/optimizer"] = time.perf_counter() - optimizer_started  # with gradient synchronisation and clipping
            step_seconds = time.time() - tick  # from the end of the last step (or evaluation) to here
            _count_step(run, step_seconds)
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
            accumulated = {}
            _after_step(run, step_objective, ids, stopped_by_time)
            run.stopped_early = None if stopped_by_time else run.stop_reason()
            stopping = stopped_by_time or run.stopped_early is not None
            if stopping:
                if run.stopped_early is not None:
                    tqdm.write(f"step {s.step}: {run.stopped_early}: stopping")
                break
            tick = time.time()
        if s.batch_index >= run.batches_per_epoch:
            s.epoch, s.batch_index = s.epoch + 1, 0
    progress.close()


def _micro_step(run: Run, objective_of, ids: list[int], accumulated: dict[str, float]):
    """One batch's forward and backward (gradients accumulate until the optimizer step); its statistics added to
    `accumulated`. Returns (the step's objective, whether its loss was finite)."""
    procs, s, t = run.procs, run.state, run.config.train
    sources, targets = [run.data[i][0] for i in ids], [run.data[i][1] for i in ids]
    with procs.autocast():  # forward passes only: backward runs outside autocast, as torch recommends
        step_objective = objective_of(run.model, ids, sources, targets)
    counted = procs.sum([step_objective.input_tokens, step_objective.generated_tokens]).tolist()
    s.num_tokens, s.generated_tokens = s.num_tokens + int(counted[0]), s.generated_tokens + int(counted[1])
    # Per-token loss over the global batch: this process's share, so summed gradients are exact.
    # (At least one token: under warmup.cut_off mask a batch whose every warmup was cut trains nothing.)
    loss = -step_objective.objective / procs.sum(step_objective.tokens).clamp(min=1).to(step_objective.objective.dtype)
    global_loss = procs.sum(loss.detach()).item()
    # Backward even a NaN/inf loss (the step is then skipped): DeepSpeed reduces gradients during backward.
    stats = step_objective.stats
    backward_started = time.perf_counter()
    procs.backward(loss / t.gradient_accumulation_steps)
    stats["time/backward"] = time.perf_counter() - backward_started
    if not math.isfinite(global_loss):
        return step_objective, False
    stats["target_tokens"] = float(sum(len(target) + 1 for target in targets))
    for key, value in {"loss": global_loss, **procs.mean_stats(stats)}.items():
        accumulated[key] = accumulated.get(key, 0.0) + value / t.gradient_accumulation_steps
    return step_objective, True


def _skipped_step(run: Run, outcome: str, consecutive_bad: int) -> int:
    """Count an optimizer step that was skipped; after too many NaN/inf ones in a row, stop with `last` intact. An fp16
    overflow that halved the loss scale (`rescaled`) is the scaler finding its scale, not a bad step. Returns the
    bad steps in a row."""
    run.state.skipped_steps += 1
    if outcome == "rescaled":
        return consecutive_bad
    consecutive_bad += 1
    tqdm.write(f"step {run.state.step + 1}: NaN/inf loss or gradient, optimizer step skipped ({consecutive_bad} in a row)")
    if consecutive_bad >= run.config.train.max_bad_steps:
        raise TrainingError(f"{consecutive_bad} optimizer steps in a row had a NaN/inf loss or gradient, so training "
                            f"stopped. {after_bad_steps(run.run_dir)}")
    return consecutive_bad


def _count_step(run: Run, step_seconds: float) -> None:
    """A step done: its time counted, and under lr_decay_by_time the learning rate capped by the time left."""
    s, t = run.state, run.config.train
    s.train_seconds += step_seconds
    s.step += 1
    if t.lr_decay_by_time and t.max_train_seconds:
        # The processes' mean time, so that every process steps with the same rate.
        time_left = max(0.0, 1 - run.procs.sum(s.train_seconds).item() / run.procs.world / t.max_train_seconds)
        for group in run.optimizer.param_groups:
            group["lr"] = min(group["lr"], group["initial_lr"] * time_left)


def _after_step(run: Run, step_objective, ids: list[int], stopped_by_time: bool) -> None:
    """What follows a step: the samples of its warmups, an evaluation and checkpoints where due, the time budget's end."""
    s, t = run.state, run.config.train
    if step_objective.warmups is not None and t.samples_every and s.step % t.samples_every == 0 and run.logs is not None:
        run.logs.log_samples(s.step, [run.task.split("train")[i] for i in ids], step_objective.warmups, run.layout)
    eval_due = s.step % t.eval_every == 0 if t.eval_every else s.batch_index >= run.batches_per_epoch
    if eval_due or s.step == run.total_steps or stopped_by_time:
        run.evaluate_and_save()
    elif (t.save_every and s.step % t.save_every == 0) or s.step == t.stop_after_step:  # a paused run resumes from `last`
        run.save_resumable(last_checkpoint(run.run_dir))
    if s.step in t.save_checkpoints_at or s.step == t.stop_after_step:
        run.save_resumable(step_checkpoint(run.run_dir, s.step))
    if stopped_by_time:
        tqdm.write(f"step {s.step}: time budget train.max_train_seconds = {t.max_train_seconds:g} reached "
                   f"({s.train_seconds:.0f} s of training), stopping before step {run.total_steps}")


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
    results = {"method": config.method, "checkpoint": str(final_dir), "best_step": s.best["step"], "best_metric": s.best["metric"],
               "metric_for_best_model": run.task.primary_metric, "train_seconds": s.train_seconds,
               "steps": s.step, "stopped_early": run.stopped_early,
               "stopped_by_time_budget": s.step < run.total_steps and run.stopped_early is None,
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


def train(config: WarmupConfig, resume: bool = False, overwrite: str | None = None, model=None,
          given: dict | None = None, compute_metrics=None, callbacks=()) -> dict | None:
    """Train, keep best/last checkpoints, evaluate the best on dev and test; return results (None when
    train.stop_after_step stopped it part way).

    `model`: a (model, tokenizer) pair to train instead of loading `config.model.name` (not when resuming); `given`:
    in-memory splits instead of the configured files; `compute_metrics`: the caller's own scores at every evaluation;
    `callbacks`: transformers-style TrainerCallbacks (on_log, on_evaluate, on_save; control.should_training_stop). Both from `WarmupTrainer`. Under `accelerate launch` / torchrun
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
        return _train(config, resume, procs, run_dir, model, given, compute_metrics, callbacks)
    finally:
        if lock is not None:  # also after an error, so the same process (a notebook) can resume at once
            lock.close()


def _train(config: WarmupConfig, resume: bool, procs: Processes, run_dir: Path, given_model, given: dict | None,
           compute_metrics=None, callbacks=()) -> dict | None:
    set_seed(config.seed)  # Python's, NumPy's and torch's generators
    task = load_task(config, given, compute_metrics)
    config.data.task = task.name  # what `auto` chose, in config.yaml and for the tokenizer a preset trains
    model, tokenizer, sep_id, state, warm_start_log = starting_model(config, resume, procs, run_dir, task.split("train"), given_model)
    if procs.is_main:
        config.save(run_config_file(run_dir))
    run = prepare(config, procs, run_dir, task, model, tokenizer, sep_id, state)
    del model  # `run` holds it now, and lets go of it before the final evaluation
    run.callbacks = list(callbacks)
    open_logs(run, resume, warm_start_log)
    _train_loop(run, warm_started=state is not None and not resume)
    procs.finish()
    if run.state.step == config.train.stop_after_step < run.total_steps:  # stopped part way, as asked: nothing to evaluate yet
        print(f"stopped after step {run.state.step} of {run.total_steps} (train.stop_after_step): {step_checkpoint(run_dir, run.state.step)}")
        run.close_logs()
        return None
    return _final_results(run) if procs.is_main else None
