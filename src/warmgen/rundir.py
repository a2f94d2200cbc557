"""The run folder: its file names, the lock, what a new run may replace, and shared warm starts.

    config.yaml         effective config          metrics.jsonl   one line per log/eval
    samples.jsonl       sampled warmups + rewards  results.json    final test/dev metrics
    eval/{dev,test}/    metrics + predictions      .lock           held while a run trains here
    evaluations/SPLIT-N/  each later `warmgen eval` of the run
    checkpoints/last    checkpoints/best           checkpoint folders (checkpoint.py);
    checkpoints/step-N                             last and step-N also have trainer_state.pt
    checkpoints/reference                          the KL term's frozen reference (warmup.kl_coef)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoint import CONFIG_NAME, STATE_NAME, swapped_out
from .config_files import read_yaml
from .errors import ConfigError
from .runlog import METRICS, SAMPLES


def hold_folder(folder: Path, user: str):
    """Lock `folder` for this process (`folder/.lock`) and return the open lock file: the lock lasts while it is open.

    `user` names what holds it ("warmgen train"). A second process that tries gets a ConfigError
    naming the holder and its pid, instead of writing the same checkpoints and logs. The operating
    system drops the lock when the holder exits, even on kill -9, so no stale lock is left behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        handle = open(folder / ".lock", "a+", encoding="utf-8")  # "a+" keeps the holder's line readable until we own it
        holder = _locked_by(handle)
        if holder is None:
            break
        # `folder_holder` (compare --status) takes the lock for an instant to test it: wait that out.
        time.sleep(0.1)
    else:
        raise ConfigError(f"{folder} is in use by {holder}: wait for it to finish, stop it, or choose another output_dir")
    handle.truncate(0)
    handle.write(f"{os.getpid()} {user}\n")
    handle.flush()
    return handle


# What a training run writes into its folder; a folder holding any of them holds a run.
RESULTS = "results.json"
RUN_FILES = ("config.yaml", METRICS, SAMPLES, RESULTS, "checkpoints", "eval", "evaluations")


def run_config_file(run_dir: Path) -> Path:
    """The effective config a run was started with."""
    return Path(run_dir) / "config.yaml"


def results_file(run_dir: Path) -> Path:
    """The final results; its presence means the run finished."""
    return Path(run_dir) / RESULTS


def console_log_file(run_dir: Path) -> Path:
    """A run's console output when `warmgen compare` trains it in a process of its own."""
    return Path(run_dir) / "train.log"


def eval_folder(run_dir: Path, split: str) -> Path:
    """Where a run's own final evaluation of `split` writes its scores and predictions (evaluate.write_eval)."""
    return Path(run_dir) / "eval" / split


def new_evaluation_folder(run_dir: Path, split: str) -> Path:
    """Where `warmgen eval` of a run writes, unless told: a new `evaluations/<split>-N`, never the run's own eval/."""
    n = 1
    while (Path(run_dir) / "evaluations" / f"{split}-{n}").exists():
        n += 1
    return Path(run_dir) / "evaluations" / f"{split}-{n}"


def clear_run_folder(run_dir: Path, resume: bool, overwrite: str | None) -> None:
    """Make sure a new run never replaces an earlier one, or a file of the user's, unasked.

    Without `--resume`, a folder that holds a run is refused unless `overwrite` is `move` (the
    earlier run's files go to `<run_dir>.previous-N`) or `delete`. A config.yaml that warmgen did
    not write (the user's own) is never moved, deleted or written over.
    """
    if resume:
        return
    if _users_config(run_config_file(run_dir)):
        raise ConfigError(f"{run_config_file(run_dir)} is not a run's config (warmgen writes every field there): a run in "
                          f"{run_dir} would write over it; move the file, or choose another output_dir")
    found = [name for name in RUN_FILES if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    if not found:
        return
    state = "finished" if RESULTS in found else "started"
    if overwrite is None:
        raise ConfigError(f"{run_dir} holds a {state} run ({', '.join(found)}): continue it with --resume, keep it and start "
                          f"over with --overwrite move (to {run_dir}.previous-N), or start over with --overwrite delete (in "
                          "Python: train(resume_from_checkpoint=True), train(overwrite='move' or 'delete'))")
    if overwrite == "move":
        n = 1
        while run_dir.with_name(f"{run_dir.name}.previous-{n}").exists():
            n += 1
        aside = run_dir.with_name(f"{run_dir.name}.previous-{n}")
        aside.mkdir()
        for name in found:
            os.replace(run_dir / name, aside / name)
        tqdm.write(f"moved the earlier run in {run_dir} to {aside}")
        return
    links = [str(run_dir / name) for name in found if (run_dir / name).is_symlink()]
    if links:  # checked before anything is deleted
        raise ConfigError(f"--overwrite delete: {', '.join(links)} is a symbolic link, and warmgen deletes only inside the "
                          "run folder: nothing was deleted; remove the link (and what it points to) yourself, or use "
                          "--overwrite move")
    for name in found:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _users_config(path: Path) -> bool:
    """Whether `path` is a config.yaml that warmgen did not write: a run's holds every field, in every section
    (those of its warmgen version: the ones checked here have been there from the first)."""
    if not path.is_file():
        return False
    try:
        saved = read_yaml(path)
    except ConfigError:
        return True
    return not (isinstance(saved, dict) and RUN_CONFIG_KEYS <= set(saved))


# What every config.yaml warmgen has written holds, whatever its version.
RUN_CONFIG_KEYS = {"method", "seed", "output_dir", "model", "data", "warmup", "train", "decode"}


def last_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run resumes from (with trainer_state.pt)."""
    return run_dir / "checkpoints" / "last"


def after_bad_steps(run_dir: Path) -> str:
    """How to go on after training stopped on NaN/inf steps: from `last` where it can resume, else from the start."""
    if (last_checkpoint(run_dir) / STATE_NAME).is_file():
        return (f"The last good checkpoint is {last_checkpoint(run_dir)}: lower train.learning_rate or train.max_grad_norm and "
                "continue with --resume")
    return "No checkpoint was saved yet: lower train.learning_rate or train.max_grad_norm and start again with --overwrite delete"


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of the best dev score so far (weights only), which the final evaluation decodes."""
    return run_dir / "checkpoints" / "best"


def reference_dir(run_dir: Path) -> Path:
    """Where the KL term's frozen reference model is kept (see reference.py)."""
    return run_dir / "checkpoints" / "reference"


def step_checkpoint(run_dir: Path, step: int) -> Path:
    """Where `train.save_checkpoints_at` keeps the checkpoint of optimizer step `step`."""
    return run_dir / "checkpoints" / f"step-{step}"


def init_checkpoint(run_dir: Path) -> Path:
    """Where the main process leaves the new model that every process of a multi-process run starts from."""
    return run_dir / "checkpoints" / "init"


def checkpoint_folder(path: Path) -> Path:
    """`path` if it is a checkpoint, else its run's best (else last) checkpoint; a checkpoint's previous copy
    where a run was killed between the two renames of its swap (checkpoint.save_checkpoint)."""
    if (path / CONFIG_NAME).is_file():
        return path
    for folder in (best_checkpoint(path), last_checkpoint(path)):
        for candidate in (folder, swapped_out(folder)):
            if (candidate / CONFIG_NAME).is_file():
                return candidate
    raise ConfigError(f"{path} is neither a checkpoint folder nor a run directory with checkpoints/best or checkpoints/last")


def run_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (the checkpoint itself when it stands alone)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint


def resumable(run_dir: Path) -> bool:
    """Whether `run_dir` has a checkpoint that `--resume` continues (also one killed between the renames of a swap)."""
    return any((folder / STATE_NAME).is_file() for folder in (last_checkpoint(run_dir), swapped_out(last_checkpoint(run_dir))))


def folder_holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock ("warmgen train (pid 123)"), or None when no process does."""
    if not (folder / ".lock").is_file():
        return None
    with open(folder / ".lock", "a+", encoding="utf-8") as handle:
        return _locked_by(handle)  # closing the file drops the lock if we got it


def _locked_by(handle) -> str | None:
    """Take the lock on `handle`, or (closing it) describe the process that has it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        handle.seek(0)
        pid, _, user = handle.read().strip().partition(" ")
        handle.close()
        return f"{user or 'another process'} (pid {pid or 'unknown'})"
