"""Fuzzing: whatever a user feeds the readers and the config parser, the answer is a valid result
or one `warmgen: error:` line with exit 2, never a traceback; and faults at seeded random points
of training (a crash in a step, a full disk at a checkpoint write, a kill while a checkpoint's old copy is deleted
or while a log line is written) are resumed to the exact run."""

import random
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from helpers.faults import failing_on_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability import config, losses

import warmgen.checkpoint
import warmgen.cli
import warmgen.objectives
import warmgen.runlog
import warmgen.train
from warmgen.config import SECTIONS, TOP_LEVEL, ConfigError
from warmgen.config_files import load_config
from warmgen.records import DataError, csv_records, json_array_records, read_jsonl, read_parallel, read_tsv, text_examples

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like data files: separators, quotes, braces, BOMs, CRs, invalid bytes.
PIECES = ["\t", "\n", "\r\n", '"', "{", "}", "[", "]", ":", ",", " ", "\ufeff", "input", "target", "a", "é", "null", "1",
          "\\ud800", '"input": "x", ', "[[[[[[[["]
file_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(PIECES), max_size=40).map(lambda parts: "".join(parts).encode()),
    st.text(max_size=120).map(str.encode),
)


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and message.strip() != ""


@FUZZ
@given(content=file_bytes, other=file_bytes)
def test_readers_return_examples_or_one_line_errors(content, other):
    with tempfile.TemporaryDirectory() as folder:
        path, pair = Path(folder) / "d", Path(folder) / "e"
        path.write_bytes(content)
        pair.write_bytes(other)
        for read in (lambda: read_tsv(path), lambda: read_jsonl(path, "input", "target"), lambda: read_parallel(path, pair),
                     lambda: text_examples(csv_records(path), "input", "target"),
                     lambda: text_examples(json_array_records(path), "input", "target")):
            try:
                rows = read()
            except DataError as err:
                assert one_line(str(err)) and str(path) in str(err) or str(pair) in str(err)
                continue
            assert all(r.source.strip() and r.target.strip() for r in rows)  # a leading BOM: test_records.py


KEYS = [*TOP_LEVEL, *(f"{s}.{f}" for s, cls in SECTIONS.items() for f in cls.__dataclass_fields__), "warmup.num_warmup", "nope"]
VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "2.5", "1e-3", ".inf", "nan", "true", "null", "[]", "[a, b]", "{a: 1}", "''",
                                    "sft", "warmup", "auto", "random", "\"\\n\"", "x" * 300]), st.text(max_size=12))


@FUZZ
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4), bare=st.booleans())
def test_overrides_give_a_config_or_one_line_error(pairs, bare, monkeypatch, capsys):
    """The CLI with random overrides (training replaced by a no-op): exit 0 or one error line with exit 2."""
    monkeypatch.setattr(warmgen.train, "train", lambda config, resume=False, overwrite=None: None)
    args = [item for key, value in pairs for item in ((f"--{key.split('.')[-1]}" if bare else f"--{key}"), value)]
    code = warmgen.cli.main(["train", *args])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert err.startswith("warmgen: error: ") and one_line(err)


YAML_PIECES = ["train:", "\n", "  ", "epochs: 2", "method: sft", "warmup:", "- ", "{", "}", "[", ":", "&a", "*a", "!!python/object:os.system",
               "train:\n  epochs: 1", "\t", "'", "seed: -1", "model: {name: t5-tiny}", "\ufeff", "&a [*a, *a, *a, *a, *a, *a]",
               "[*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]"]


@FUZZ
@given(parts=st.lists(st.sampled_from(YAML_PIECES), max_size=12))
def test_yaml_files_give_a_config_or_one_line_error(parts):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.yaml"
        path.write_text("".join(parts), encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as err:
            assert one_line(str(err)) and str(path) in str(err) or "must" in str(err) or "set train" in str(err)


def test_faults_at_seeded_random_points_resume_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """Each fault once, at a seeded random point: a crash inside warmup step n, a full disk at the n-th trainer-state
    write, a kill while the n-th swapped-out checkpoint is being deleted, a kill in the middle of the n-th log line;
    then --resume."""
    warmgen.train.train(config(tmp_path, "whole", "--train.eval_every", "1"))
    expected = losses(tmp_path / "whole")
    rng = random.Random(20261130)
    real_step, real_save, real_open_logs = warmgen.objectives.warmup_step, torch.save, warmgen.runlog.open_logs
    for case, fault in enumerate(["crash", "full_disk", "kill_deleting_old", "torn_log_line"]):
        run = f"case{case}"
        n = rng.randint(2, 5)
        if fault == "crash":
            monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, n))
        elif fault == "full_disk":
            monkeypatch.setattr(torch, "save", failing_from_call(real_save, n, "[enforce fail at inline_container.cc:672] . unexpected pos"))
        elif fault == "kill_deleting_old":
            monkeypatch.setattr(warmgen.checkpoint.shutil, "rmtree", dying_while_deleting_old(shutil.rmtree, n))
        else:
            monkeypatch.setattr(warmgen.runlog, "open_logs", tearing_the_metrics_log(real_open_logs, n))
        with pytest.raises((RuntimeError, OSError)):  # the simulated crash or kill, or RunFolderError for the full disk
            warmgen.train.train(config(tmp_path, run, "--train.eval_every", "1"))
        monkeypatch.undo()
        if fault != "kill_deleting_old":
            assert not list((tmp_path / run / "checkpoints").glob("*.tmp"))
        else:
            assert list((tmp_path / run / "checkpoints").glob("*.old")), "the kill left a half-deleted copy"
        warmgen.train.train(config(tmp_path, run, "--train.eval_every", "1"), resume=True)
        assert losses(tmp_path / run) == expected, run


def failing_from_call(function, n: int, message: str):
    """`function`, except that from its n-th call on it raises RuntimeError(message)."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise RuntimeError(message)
        return function(*args, **kwargs)

    return wrapper


def dying_while_deleting_old(rmtree, n: int):
    """`shutil.rmtree`, except that its n-th deletion of a checkpoint's swapped-out copy removes one file and then
    dies, as a kill -9 in the middle of the deletion leaves it."""
    calls = {"n": 0}

    def wrapper(path, *args, **kwargs):
        if str(path).endswith(".old") and Path(path).exists():
            calls["n"] += 1
            if calls["n"] == n:
                next(p for p in Path(path).iterdir() if p.is_file()).unlink()
                raise KeyboardInterruptLike("killed while deleting " + str(path))
        return rmtree(path, *args, **kwargs)

    return wrapper


class KeyboardInterruptLike(RuntimeError):
    """A kill: nothing after it runs (no handler in warmgen catches it)."""


def tearing_the_metrics_log(open_logs, n: int):
    """`runlog.open_logs`, except that the metrics stream tears its n-th line (TornOnWrite)."""

    def wrapper(*args):
        metrics, samples = open_logs(*args)
        return TornOnWrite(metrics, n), samples

    return wrapper


class TornOnWrite:
    """A log stream whose n-th training-step line (step n, after the step n - 1 checkpoint) is cut in the middle, and
    the process killed, as a kill or a full disk leaves it."""

    def __init__(self, stream, n: int):
        self.stream, self.n, self.name = stream, n, stream.name

    def write(self, text: str) -> None:
        self.n -= '"loss"' in text
        if self.n == 0:
            self.stream.write(text[: len(text) // 2])
            self.stream.flush()
            raise KeyboardInterruptLike("killed while writing " + self.name)
        self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)
