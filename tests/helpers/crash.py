"""Simulated crashes for the resume tests.

Run as a script, it is `warmgen.cli` whose third warmup step raises (after the step-2
checkpoint): a crash under a multi-process launch.
"""

import sys


def failing_on_call(function, n: int):
    """`function`, except that its n-th call raises RuntimeError('simulated crash')."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")
        return function(*args, **kwargs)

    return wrapper


if __name__ == "__main__":
    import warmgen.train
    from warmgen.cli import main

    warmgen.train.warmup_step = failing_on_call(warmgen.train.warmup_step, 3)
    sys.exit(main(sys.argv[1:]))
