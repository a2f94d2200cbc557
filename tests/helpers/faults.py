"""Simulated faults for the resume and reliability tests.

Run as a script, it is `warmgen.cli` with a fault in its warmup steps, for multi-process launches:

    faults.py crash ARGS...      the third warmup step raises (after the step-2 checkpoint)
    faults.py nan ARGS...        the second call of each objective (SFT's, the warmup step's) has a NaN loss, on every process
    faults.py fast_clock ARGS... the last process's training clock runs 1000 s per reading
    faults.py segfault_once ARGS...  the last process dies of a segmentation fault, the first time it is run
    faults.py overflow_in_last_shard ARGS...  at the second optimizer step, one gradient element of the last process is inf
"""

import ctypes
import itertools
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def failing_on_call(function, n: int):
    """`function`, except that its n-th call raises RuntimeError('simulated crash')."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")
        return function(*args, **kwargs)

    return wrapper


def ticking_clock(seconds: float) -> SimpleNamespace:
    """A stand-in for warmgen.train's `time` module whose time() advances `seconds` per reading."""
    readings = itertools.count(seconds, seconds)
    return SimpleNamespace(time=lambda: next(readings), perf_counter=time.perf_counter, sleep=time.sleep)


def nan_objective_on_calls(warmup_step, calls: set[int]):
    """`warmup_step`, except that on the given calls (1-based) its objective, hence the loss, is NaN."""
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        result = warmup_step(*args, **kwargs)
        if count["n"] in calls:
            result.objective = result.objective * float("nan")
        return result

    return wrapper


def overflowing_on_call(sum_gradients, n: int):
    """`Processes.sum_gradients`, except that on its n-th call it makes one element of the first gradient inf
    afterwards: in this process's shard only, when the weights are sharded."""
    calls = {"n": 0}

    def wrapper(self, model):
        sum_gradients(self, model)
        calls["n"] += 1
        if calls["n"] == n:
            grad = next(p.grad for p in model.parameters() if p.grad is not None)
            (grad.to_local() if hasattr(grad, "to_local") else grad).view(-1)[0] = float("inf")

    return wrapper


if __name__ == "__main__":
    import warmgen.distributed
    import warmgen.objectives
    import warmgen.train
    from warmgen.cli import main

    fault, args = sys.argv[1], sys.argv[2:]
    if fault == "crash":
        warmgen.objectives.warmup_step = failing_on_call(warmgen.objectives.warmup_step, 3)
    elif fault == "nan":
        warmgen.objectives.warmup_step = nan_objective_on_calls(warmgen.objectives.warmup_step, {2})
        warmgen.objectives.SFTObjective.__call__ = nan_objective_on_calls(warmgen.objectives.SFTObjective.__call__, {2})
    elif fault == "segfault_once":  # the last rank dies of a segmentation fault, the first time only
        marker = Path(args[args.index("--output_dir") + 1]).parent / "segfaulted"
        if int(os.environ["RANK"]) == int(os.environ["WORLD_SIZE"]) - 1 and not marker.exists():
            marker.touch()
            ctypes.string_at(0)
    elif fault == "overflow_in_last_shard":
        if int(os.environ["RANK"]) == int(os.environ["WORLD_SIZE"]) - 1:
            warmgen.distributed.Processes.sum_gradients = overflowing_on_call(warmgen.distributed.Processes.sum_gradients, 2)
    elif int(os.environ["RANK"]) == int(os.environ["WORLD_SIZE"]) - 1:  # fast_clock
        warmgen.train.time = ticking_clock(1000)
    sys.exit(main(args))
