"""The training loop: batches, an SFT or warmup step, AdamW, evaluation, checkpoints, logs.

What a run writes where, and how checkpoints are saved and resumed, is `rundir.py`'s.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import epoch_order, tokenize
from .config import ConfigError, WarmupConfig
from .config_files import differences, read_yaml
from .distributed import Processes, check_launch
from .errors import TrainingError
from .evaluate import evaluate, write_eval
from .layout import make_layout
from .methods import add_method_tokens, decodes_with_warmup, fixed_warmup, learns_warmups, step_options, trains_sft_at
from .models import count_parameters, has_dropout, load_model, ready_model
from .provenance import git_commit, library_versions
from .reference import check_reference, needs_reference, start_reference
from .rundir import (
    CONFIG_NAME,
    STATE_NAME,
    TrainState,
    clear_run_folder,
    hold_folder,
    load_checkpoint,
    load_trainer_state,
    load_warm_start,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoint,
    truncate_log,
    write_samples,
)
from .tasks import load_task
from .trackers import Trackers, check_installed
from .validation import validate
from .warmup import WarmupMemory, merges_repeats, warmup_step

# ----------------------------------------------------------------------------- checkpoints


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


# ----------------------------------------------------------------------------- the loop


def train(config: WarmupConfig, resume: bool = False, overwrite: str | None = None, model=None, given: dict | None = None) -> dict:
    """Train, keep best/last checkpoints, evaluate the best on dev and test; return results.

    `model`: a (model, tokenizer) pair to train instead of loading `config.model.name` (not used
    when resuming, which continues from the checkpoint); `given`: in-memory splits used instead of
    the configured files (see `load_task`). Both come from the Python API (`WarmupTrainer`).

    Under `accelerate launch` / torchrun each process trains on its share of every global batch
    (`batch_size` examples per process); only the main process logs, saves and evaluates the final
    checkpoint (dev evaluation during training runs on every process when the model is sharded),
    and only it returns results (the others return None).

    A folder that holds an earlier run is refused unless `resume` continues it or `overwrite`
    (`move` or `delete`) says what to do with it; see `clear_run_folder`.
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
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)

    task = load_task(config, given)
    train_examples = task.split("train")
    has_dev = bool(task.splits.get("dev"))
    last_dir, best_dir = run_dir / "checkpoints" / "last", run_dir / "checkpoints" / "best"
    state, warm_start_log = None, []
    if resume:
        old = last_dir.with_name(last_dir.name + ".old")
        if not last_dir.exists() and (old / STATE_NAME).is_file():
            os.replace(old, last_dir)  # killed between the two renames of save_checkpoint
        if not (last_dir / STATE_NAME).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume in {last_dir}; start over without --resume "
                                    "(with --overwrite delete or move if the folder holds the stopped run)")
        changed = differences(read_yaml(last_dir / CONFIG_NAME) or {}, config.to_dict())
        if changed:
            raise ConfigError(f"--resume: {last_dir} was trained with another config ({'; '.join(changed)}); resume with the "
                              "settings it was trained with, or start a new run in another output_dir")
        model, tokenizer, sep_id, _ = load_checkpoint(last_dir)
        state = load_trainer_state(last_dir / STATE_NAME)
        if len(state.rng) != procs.world:
            raise TrainingError(f"{last_dir} was saved by {len(state.rng)} process(es); resume it with as many, not {procs.world}")
    elif config.method == "warmup" and config.warmup.sft_warm_start_from:
        model, tokenizer, sep_id, state, warm_start_log = load_warm_start(config, procs.world)
    elif procs.world == 1:
        model, tokenizer, sep_id = _new_model(config, train_examples, given_model)
    else:
        # Every process must start from the same weights and tokenizer: the main process builds them.
        init_dir = run_dir / "checkpoints" / "init"
        if procs.is_main:
            save_checkpoint(init_dir, *_new_model(config, train_examples, given_model)[:2], config, None)
        procs.barrier()
        model, tokenizer, sep_id, _ = load_checkpoint(init_dir)
        torch.manual_seed(config.seed * 1000 + procs.rank)  # each process samples its own warmups
    if procs.is_main:
        config.save(run_dir / "config.yaml")
    device = procs.device
    model.to(device)
    procs.shard(model)  # FSDP when the accelerate config asks for it
    layout = make_layout(model, tokenizer, sep_id, config)
    fixed = fixed_warmup(layout, config)
    options = step_options(config)
    data, truncation = tokenize(layout, train_examples, config.data.on_overlength)

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
    lengths = [len(source) + len(target) for source, target in data] if t.group_by_length else None
    steps_per_epoch = math.ceil(batches_per_epoch / t.gradient_accumulation_steps)
    total_steps = t.max_steps or math.ceil(t.epochs * steps_per_epoch)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(t.lr_warmup_steps, total_steps), total_steps)
    parameters = count_parameters(model)  # before ZeRO-3 partitions the weights
    procs.prepare_optimizer(model, optimizer, scheduler, t)  # DeepSpeed ZeRO when the accelerate config asks for it
    check_reference(config, procs.sharded)
    reference = None  # the KL term's, from the first warmup step on

    step, epoch, batch_index, train_seconds, generated_tokens, skipped_steps, num_tokens = 0, 0, 0, 0.0, 0, 0, 0
    best = {"metric": None, "step": None}
    memory = WarmupMemory(config.warmup) if learns_warmups(config) and config.warmup.keep_best_warmup else None
    if state is not None:
        procs.load_optimizer_state(model, optimizer, state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        step, epoch, batch_index, train_seconds = state.step, state.epoch, state.batch_index, state.train_seconds
        generated_tokens, skipped_steps, best, num_tokens = state.generated_tokens, state.skipped_steps, state.best, state.num_tokens
        set_rng_state(state.rng[procs.rank])
        if memory is not None and state.warmup_memory is not None:
            memory.load_state_dict(state.warmup_memory)
    if procs.is_main:
        for name in ("metrics.jsonl", "samples.jsonl"):
            if resume:
                truncate_log(run_dir / name, step)
            else:
                (run_dir / name).unlink(missing_ok=True)

    header = {"step": 0, "event": "start", "parameters": parameters, "train_examples": len(data),
              "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "processes": procs.world, "sharded": procs.sharded,
              "deepspeed": procs.engine is not None, **truncation,
              "family": layout.family, "dropout": has_dropout(model)}
    if learns_warmups(config):
        header["merge_repeats"] = merges_repeats(config.warmup, header["dropout"])
        if config.warmup.sft_warm_start_from:
            header["sft_warm_start_from"] = config.warmup.sft_warm_start_from
    metrics_log = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if procs.is_main else None
    samples_log = open(run_dir / "samples.jsonl", "a", encoding="utf-8") if procs.is_main else None

    trackers = Trackers(t.report_to, run_dir, config.to_dict()) if procs.is_main and t.report_to else None

    def log(row: dict) -> None:
        if procs.is_main:
            metrics_log.write(json.dumps(row) + "\n")
            metrics_log.flush()
            if trackers is not None:
                trackers.log(row)

    if not resume and procs.is_main:
        print(json.dumps(header))
        for row in [header] + warm_start_log:  # the SFT run's training log of the steps this run starts after
            log(row)

    def evaluate_and_save() -> None:
        # Every process calls this: the gathers below (and, for a sharded model, evaluation) need them all.
        rng = procs.gather(rng_state())  # every process's RNG, so a resumed run samples the same
        row, improved = {"step": step, "epoch": step / steps_per_epoch, "train_seconds": train_seconds}, False
        if has_dev and procs.evaluates:
            scores, _ = evaluate(model, layout, task, "dev", config, use_warmup=decodes_with_warmup(config))
            row.update({f"dev/{k}": v for k, v in scores.items() if not k.endswith("signature") and k != "skipped"})
            value = scores[task.primary_metric]
            improved = best["metric"] is None or (value > best["metric"] if task.greater_is_better else value < best["metric"])
            if improved:
                best.update(metric=value, step=step)
        weights, optimizer_state = procs.full_state_dict(model), procs.optimizer_state(model, optimizer)
        if procs.is_main:
            if improved:
                save_checkpoint(best_dir, model, tokenizer, config, None, weights)
            if has_dev:
                tqdm.write(f"step {step}: dev {task.primary_metric} {value:.4f} (best {best['metric']:.4f} at step {best['step']})")
            save_checkpoint(last_dir, model, tokenizer, config, trainer_state(rng, optimizer_state), weights)
            log(row)
        procs.barrier()

    def keep_checkpoint() -> None:  # train.save_checkpoints_at; every process calls it, as evaluate_and_save
        rng = procs.gather(rng_state())
        weights, optimizer_state = procs.full_state_dict(model), procs.optimizer_state(model, optimizer)
        if procs.is_main:
            save_checkpoint(step_checkpoint(run_dir, step), model, tokenizer, config, trainer_state(rng, optimizer_state), weights)
        procs.barrier()

    def trainer_state(rng: list, optimizer_state: dict) -> TrainState:
        return TrainState(step, epoch, batch_index, train_seconds, generated_tokens, skipped_steps, optimizer_state,
                          scheduler.state_dict(), best, rng, memory.state_dict() if memory is not None else None, num_tokens)

    def out_of_time() -> bool:
        # One answer for all processes: one stopping alone would leave the others waiting in a collective.
        return t.max_train_seconds > 0 and procs.sum(float(train_seconds >= t.max_train_seconds)).item() > 0

    model.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"{config.method}", dynamic_ncols=True, mininterval=1.0,
                    disable=not procs.is_main)
    accumulated: dict[str, float] = {}
    micro, bad_batch, consecutive_bad = 0, False, 0
    stopped_by_time = out_of_time()  # a run resumed after its budget ran out goes straight to the final evaluation
    if state is not None and not resume and t.eval_every and step % t.eval_every == 0:
        evaluate_and_save()  # the evaluation a run that trained its own warm start makes at this step
    tick = time.time()
    while step < total_steps and not stopped_by_time:
        order = epoch_order(len(data), config.seed, epoch, lengths, global_batch)
        while batch_index < batches_per_epoch and step < total_steps:
            global_ids = order[batch_index * global_batch : (batch_index + 1) * global_batch]
            batch_index += 1
            if len(global_ids) < procs.world:
                continue  # a last batch too small to give every process an example is dropped
            ids = global_ids[procs.rank :: procs.world]
            sources = [data[i][0] for i in ids]
            targets = [data[i][1] for i in ids]
            use_sft = trains_sft_at(config, step)
            # Forward passes only under autocast; backward runs outside it, as torch recommends.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.mixed_precision == "bf16"):
                if use_sft:
                    scored = time.perf_counter()
                    scores = layout.score(model, sources, [None] * len(ids), targets)
                    objective, tokens = scores.logp_target.sum(), scores.n_target.sum()
                    stats = {"time/scoring": time.perf_counter() - scored}
                    input_tokens = sum(len(s) + len(t) + 1 for s, t in zip(sources, targets))
                else:
                    kept, fresh = memory.plan(ids) if memory is not None else (None, None)
                    if fixed is not None:  # pause tokens, or the fixed-warmup control: each example's one candidate
                        kept, fresh = [fixed] * len(ids), [0] * len(ids)
                    if reference is None and needs_reference(config):
                        reference = start_reference(model, tokenizer, config, run_dir, procs.is_main, device)
                    result = warmup_step(model, layout, sources, targets, options, kept, fresh, reference)
                    objective, tokens, stats, input_tokens = result.objective, result.tokens, result.stats, result.input_tokens
                    generated_tokens += int(procs.sum(result.generated_tokens))
                    if memory is not None:  # every process keeps the whole memory: examples move between processes
                        for updates in procs.gather(memory.updates(ids, result, targets)):
                            memory.apply(updates)
            num_tokens += int(procs.sum(input_tokens))
            # Per-token loss over the global batch: this process's share, so summed gradients are exact.
            loss = -objective / procs.sum(tokens).to(objective.dtype)
            global_loss = procs.sum(loss.detach()).item()
            # Backward even a NaN/inf loss (the step is then skipped): DeepSpeed reduces gradients during backward.
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
            if micro % t.gradient_accumulation_steps and batch_index < batches_per_epoch:
                continue
            micro = 0
            lr = optimizer.param_groups[0]["lr"]  # the schedule's, or lower under lr_decay_by_time
            optimizer_started = time.perf_counter()
            grad_norm, stepped = procs.optimizer_step(model, optimizer, scheduler, t.max_grad_norm, skip=bad_batch)
            if not stepped:
                # The whole optimizer step was skipped; after too many in a row, stop with `last` intact.
                accumulated, bad_batch = {}, False
                skipped_steps += 1
                consecutive_bad += 1
                tqdm.write(f"step {step + 1}: NaN/inf loss or gradient, optimizer step skipped ({consecutive_bad} in a row)")
                if consecutive_bad >= t.max_bad_steps:
                    where = (f"The last good checkpoint is {last_dir}: lower train.learning_rate or train.max_grad_norm and "
                             "continue with --resume" if (last_dir / STATE_NAME).is_file() else
                             "No checkpoint was saved yet: lower train.learning_rate or train.max_grad_norm and start again "
                             "with --overwrite delete")
                    raise TrainingError(f"{consecutive_bad} optimizer steps in a row had a NaN/inf loss or gradient, so training "
                                        f"stopped. {where}")
                continue
            consecutive_bad = 0
            accumulated["time/optimizer"] = time.perf_counter() - optimizer_started  # with gradient synchronisation and clipping
            # Training time runs from the end of the last step (or evaluation) to here.
            step_seconds = time.time() - tick
            train_seconds += step_seconds
            step += 1
            if t.lr_decay_by_time and t.max_train_seconds:
                # The processes' mean time, so that every process steps with the same rate.
                time_left = max(0.0, 1 - procs.sum(train_seconds).item() / procs.world / t.max_train_seconds)
                for group in optimizer.param_groups:
                    group["lr"] = min(group["lr"], group["initial_lr"] * time_left)
            stopped_by_time = step < total_steps and out_of_time()
            progress.update(1)
            if "completions/mean_length" in accumulated:
                progress.set_postfix(loss=f"{accumulated['loss']:.3f}", reward=f"{accumulated['reward']:.2f}",
                                     wlen=f"{accumulated['completions/mean_length']:.1f}",
                                     clipped=f"{accumulated['completions/clipped_ratio']:.2f}")
            else:
                progress.set_postfix(loss=f"{accumulated['loss']:.3f}")
            if step % t.log_every == 0 or step == total_steps or stopped_by_time:
                # The machine's 1-minute load average: times are only comparable between runs that had the CPU alone.
                log({"step": step, "epoch": step / steps_per_epoch, "learning_rate": lr, "grad_norm": grad_norm, "sft": use_sft,
                     "num_tokens": num_tokens, "skipped_steps": skipped_steps, "time/step": step_seconds, "load_average": os.getloadavg()[0], **accumulated})
            if not use_sft and t.samples_every and step % t.samples_every == 0 and procs.is_main:
                samples = write_samples(samples_log, step, [train_examples[i] for i in ids], result, layout)
                if trackers is not None:
                    trackers.log_samples(step, samples)
            accumulated = {}
            eval_due = step % t.eval_every == 0 if t.eval_every else batch_index >= batches_per_epoch
            if eval_due or step == total_steps or stopped_by_time:
                evaluate_and_save()
            if step in t.save_checkpoints_at:
                keep_checkpoint()
            if stopped_by_time:
                tqdm.write(f"step {step}: time budget train.max_train_seconds = {t.max_train_seconds:g} reached "
                           f"({train_seconds:.0f} s of training), stopping before step {total_steps}")
                break
            tick = time.time()
        if batch_index >= batches_per_epoch:
            epoch, batch_index = epoch + 1, 0
    progress.close()
    procs.finish()
    if not procs.is_main:
        return None
    metrics_log.close()
    samples_log.close()
    if trackers is not None:
        trackers.finish()

    final_dir = best_dir if best_dir.exists() else last_dir
    final_model, final_tokenizer, final_sep, _ = load_checkpoint(final_dir)
    final_model.to(device)
    final_layout = make_layout(final_model, final_tokenizer, final_sep, config)
    results = {"method": config.method, "checkpoint": str(final_dir), "best_step": best["step"], "train_seconds": train_seconds,
               "steps": step, "stopped_by_time_budget": step < total_steps,
               "epochs": step / steps_per_epoch, "seconds_per_epoch": train_seconds / (step / steps_per_epoch),
               "parameters": parameters, "generated_tokens": generated_tokens, "skipped_steps": skipped_steps,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "versions": library_versions(), "git_commit": git_commit(), "splits": {}}
    for split in ("dev", "test"):
        if task.splits.get(split):
            scores, predictions = evaluate(final_model, final_layout, task, split, config, use_warmup=decodes_with_warmup(config))
            write_eval(run_dir / "eval" / split, scores, predictions,
                       {"checkpoint": str(final_dir), "split": split, "config": config.to_dict()})
            results["splits"][split] = scores
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results

