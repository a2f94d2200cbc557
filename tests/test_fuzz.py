"""Fuzzing: whatever a user feeds the readers and the config parser, the answer is a valid result
or one `warmgen: error:` line with exit 2, never a traceback; and faults at seeded random points
of training (a crash in a step, a full disk at a checkpoint write) are resumed to the exact run."""

import random
import tempfile
from pathlib import Path

import pytest
import torch
from helpers.faults import failing_on_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability import config, losses

import warmgen.cli
import warmgen.objectives
import warmgen.train
from warmgen.config import SECTIONS, TOP_LEVEL, ConfigError
from warmgen.config_files import load_config
from warmgen.records import DataError, csv_records, json_array_records, read_jsonl, read_parallel, read_tsv, text_examples

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like data files: separators, quotes, braces, BOMs, CRs, invalid bytes.
PIECES = ["\t", "\n", "\r\n", '"', "{", "}", "[", "]", ":", ",", " ", "\ufeff", "input", "target", "a", "é", "null", "1"]
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
               "train:\n  epochs: 1", "\t", "'", "seed: -1", "model: {name: t5-tiny}", "\ufeff"]


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
    """4 seeded cases: a crash inside warmup step n, or a full disk at the n-th trainer-state write; then --resume."""
    warmgen.train.train(config(tmp_path, "whole", "--train.eval_every", "1"))
    expected = losses(tmp_path / "whole")
    rng = random.Random(20261130)
    real_step, real_save = warmgen.objectives.warmup_step, torch.save
    for case in range(4):
        run = f"case{case}"
        if rng.random() < 0.5:
            monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, rng.randint(2, 6)))
        else:
            writes = {"n": 0, "fail_at": rng.randint(2, 5)}

            def full_disk(*args, writes=writes, **kwargs):
                writes["n"] += 1
                if writes["n"] >= writes["fail_at"]:
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
                return real_save(*args, **kwargs)

            monkeypatch.setattr(torch, "save", full_disk)
        with pytest.raises(RuntimeError):  # the simulated crash, or RunFolderError for the full disk
            warmgen.train.train(config(tmp_path, run, "--train.eval_every", "1"))
        monkeypatch.undo()
        assert not list((tmp_path / run / "checkpoints").glob("*.tmp"))
        warmgen.train.train(config(tmp_path, run, "--train.eval_every", "1"), resume=True)
        assert losses(tmp_path / run) == expected, run
