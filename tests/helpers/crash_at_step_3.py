"""`warmgen.cli train` whose third warmup step raises, after the step-2 checkpoint: a crash under a multi-process launch."""

import sys

import warmgen.train
from warmgen.cli import main

real_step, calls = warmgen.train.warmup_step, {"n": 0}


def dies_at_step_3(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 3:
        raise RuntimeError("simulated crash")
    return real_step(*args, **kwargs)


warmgen.train.warmup_step = dies_at_step_3
sys.exit(main(sys.argv[1:]))
