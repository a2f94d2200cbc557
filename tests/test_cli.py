"""The real CLI end to end on a tiny G2P subset with a tiny T5 built from scratch."""

import json
import subprocess
import sys

import pytest

from warmgen.cli import main

TINY = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "48",
        "--data.max_dev_examples", "8", "--data.max_test_examples", "8", "--train.max_steps", "4", "--train.batch_size", "8", "--train.eval_every", "2",
        "--train.log_every", "1", "--train.samples_every", "2", "--warmup.max_warmup_length", "4", "--decode.batch_size", "8",
        "--data.max_target_length", "16"]


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [round(r["loss"], 4) for r in rows if "loss" in r]


@pytest.mark.parametrize("method", ["sft", "warmup"])
def test_train_eval_generate(tmp_path, capsys, method):
    run = tmp_path / method
    assert main(["train", *TINY, "--method", method, "--output_dir", str(run)]) == 0
    for name in ("config.yaml", "metrics.jsonl", "results.json", "eval/test/predictions.jsonl"):
        assert (run / name).is_file(), name
    for name in ("model.safetensors", "tokenizer.json", "warmgen.yaml", "trainer_state.pt"):
        assert (run / "checkpoints" / "last" / name).is_file(), name
    assert len(losses(run)) == 4
    results = json.loads((run / "results.json").read_text())
    assert set(results["splits"]) == {"dev", "test"} and 0 <= results["splits"]["test"]["wer"] <= 1
    if method == "warmup":
        samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        assert samples and len(samples[0]["candidates"]) == 4
        assert sum(c["weight"] for c in samples[0]["candidates"]) == pytest.approx(1.0, abs=1e-3)  # rounded to 4 places

    capsys.readouterr()
    own = (run / "eval" / "dev" / "results.json").read_bytes()
    assert main(["eval", str(run), "--split", "dev", "--decode.num_beams", "2"]) == 0
    assert (run / "eval" / "dev" / "results.json").read_bytes() == own  # the run's own evaluation is never replaced
    assert "evaluations/dev-1/results.json" in capsys.readouterr().out
    record = json.loads((run / "evaluations" / "dev-1" / "results.json").read_text())
    scores = record["metrics"]
    assert scores["num_examples"] == 8 and "per" in scores
    assert record["config"]["model"]["name"] == "t5-tiny" and "transformers" in record["versions"]

    capsys.readouterr()
    assert main(["generate", str(run), "hello", "world", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == ["hello", "world"]
    assert all((line["warmup"] is None) == (method == "sft") for line in lines)


def test_pinned_losses(tmp_path):
    """Same seed and config give these losses; a change here means training changed."""
    main(["train", *TINY, "--method", "sft", "--output_dir", str(tmp_path / "sft")])
    main(["train", *TINY, "--method", "warmup", "--output_dir", str(tmp_path / "warmup")])
    assert losses(tmp_path / "sft") == pytest.approx(PINNED["sft"], abs=2e-4)
    assert losses(tmp_path / "warmup") == pytest.approx(PINNED["warmup"], abs=2e-4)


PINNED = {
    "sft": [5.2197, 5.1054, 5.2590, 4.9151],  # G2P's symbol tokenizer, presets without dropout
    "warmup": [4.5417, 4.6235, 4.6981, 4.4364],  # default objective: marginal
}


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("warmup:\n  num_warmup: 4\n")
    out = subprocess.run([sys.executable, "-m", "warmgen.cli", "train", "--config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "unknown config key 'warmup.num_warmup'" in out.stderr
    assert main(["eval", str(tmp_path)]) == 2
    assert "neither a checkpoint folder nor a run directory" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "warmgen.cli", "--debug", "train", "--config", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr  # --debug shows where it came from


def test_unknown_model_path_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--model.name", str(tmp_path / "no-such-model"), "--data.max_train_examples", "4"]) == 2
    err = capsys.readouterr().err
    assert "could not be loaded as a preset, a local folder, or a reachable hub id" in err and "Traceback" not in err


def test_fixed_warmup_control(tmp_path, capsys):
    """warmup.fixed_warmup: nothing is sampled, the one candidate is the given text, and decoding writes it."""
    run = tmp_path / "fixed"
    assert main(["train", *TINY, "--warmup.fixed_warmup", "a b", "--output_dir", str(run)]) == 0
    assert json.loads((run / "results.json").read_text())["generated_tokens"] == 0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and all([c["warmup"] for c in s["candidates"]] == ["a b"] for s in samples)
    predictions = [json.loads(line) for line in (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 8 and {p["warmup"] for p in predictions} == {"a b"}
    capsys.readouterr()
    assert main(["generate", str(run), "hello", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warmup"] == "a b"

    # Longer than max_warmup_length (4 here): refused before training, naming both fields.
    assert main(["train", *TINY, "--warmup.fixed_warmup", "abcdefghijklmnop", "--output_dir", str(tmp_path / "long")]) == 2
    assert "warmup.fixed_warmup 'abcdefghijklmnop' is" in capsys.readouterr().err
    assert main(["train", *TINY, "--warmup.fixed_warmup", "ab", "--warmup.keep_best_warmup", "true",
                 "--output_dir", str(tmp_path / "kept")]) == 2
    assert "turn off warmup.keep_best_warmup" in capsys.readouterr().err


def test_train_help_lists_every_config_key_with_its_default(capsys):
    import dataclasses

    from warmgen.config import SECTIONS

    with pytest.raises(SystemExit) as stopped:
        main(["train", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert f"--{section}.{field.name} " in out
    assert "--warmup.num_warmups               4              k: warmups sampled per training example" in out


def test_report_to_tensorboard_writes_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    run = tmp_path / "run"
    assert main(["train", "--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "24",
                 "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "3", "--train.batch_size", "8",
                 "--train.log_every", "1", "--train.eval_every", "3", "--warmup.max_warmup_length", "3",
                 "--train.samples_every", "2", "--train.report_to", "[tensorboard]", "--output_dir", str(run)]) == 0
    events = EventAccumulator(str(next((run / "runs").glob("*"))), size_guidance={"tensors": 0}).Reload()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("train/loss")] == [(r["step"], round(r["loss"], 5)) for r in logged if "loss" in r]
    assert [e.step for e in events.Scalars("eval/wer")] == [3] and "train/completions/mean_length" in events.Tags()["scalars"]
    assert not any(tag.endswith("parameters") for tag in events.Tags()["scalars"])  # the start row's constants are no curves
    # The samples as a Markdown table in the text tab: a row per candidate of samples.jsonl.
    [text] = events.Tensors("samples/text_summary")
    table = make_ndarray(text.tensor_proto).item().decode()
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert text.step == 2 and table.count("\n") == 1 + sum(len(s["candidates"]) for s in samples)
    assert all(f"| 2 | {s['source']} | {s['target']} | {c['warmup']} | {c['draws']} | {c['reward']} | {c['weight']} |" in table
               for s in samples for c in s["candidates"])


def test_report_to_wandb_offline_logs_the_scalars_and_a_samples_table(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    assert main(["train", "--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "16",
                 "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "2", "--train.batch_size", "8",
                 "--train.log_every", "1", "--train.samples_every", "2", "--warmup.max_warmup_length", "3",
                 "--train.report_to", "[wandb]", "--output_dir", str(run)]) == 0
    [offline] = (tmp_path / "wandb").glob("offline-run-*")
    # The run file is W&B's binary log; every scalar name of metrics.jsonl is in it.
    records = next(offline.glob("run-*.wandb")).read_bytes()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    names = {key for row in logged if "loss" in row for key, value in row.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step"}
    assert "completions/mean_length" in names and all(f"train/{name}".encode() in records for name in names)
    [table_file] = (offline / "files" / "media" / "table").glob("samples_2_*.table.json")
    table = json.loads(table_file.read_text())
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert table["columns"] == ["step", "source", "target", "warmup", "draws", "reward", "weight"]
    assert table["data"] == [[2, s["source"], s["target"], c["warmup"], c["draws"], c["reward"], c["weight"]]
                             for s in samples for c in s["candidates"]]


def test_report_to_a_tracker_whose_library_is_missing_is_one_line(tmp_path, capsys):
    if __import__("importlib").util.find_spec("dvclive") is not None:
        pytest.skip("dvclive is installed here")
    code = main(["train", "--model.name", "t5-tiny", "--data.max_train_examples", "8", "--train.max_steps", "1",
                 "--train.batch_size", "4", "--train.report_to", "[dvclive]", "--output_dir", str(tmp_path / "run")])
    assert code == 2 and "train.report_to dvclive: not installed; pip install dvclive" in capsys.readouterr().err
