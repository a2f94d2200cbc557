"""`warmgen demo` end to end at tiny size: both methods, the printed table, and a second run that
shows the finished demo again instead of replacing it."""

import json

import pytest

from warmgen.config import ConfigError
from warmgen.config_files import parse_overrides
from warmgen.demo import run_demo

TINY = parse_overrides(["--model.name", "bart-tiny", "--data.max_train_examples", "16", "--data.max_dev_examples", "4",
                        "--data.max_test_examples", "5", "--train.max_steps", "2", "--train.batch_size", "8",
                        "--warmup.max_warmup_length", "3", "--warmup.sft_warm_start_steps", "1", "--train.eval_every", "1",
                        "--data.max_target_length", "16"])


def test_demo_trains_both_then_shows_the_finished_demo_again(tmp_path, capsys):
    summary = run_demo(str(tmp_path), TINY)
    out = capsys.readouterr().out
    assert "test WER" in out and "First 5 test words" in out and "configs/compare/g2p-devices.yaml" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("sft ", "warmup "))}
    assert rows["sft"][-1] == "-" and float(rows["warmup"][-1]) == pytest.approx(summary["results"]["warmup"]["test"]["empty_warmup/wer"], abs=5e-4)
    assert set(summary["results"]) == {"sft", "warmup"} and (tmp_path / "demo.json").is_file()
    assert summary["machine"]["torch_threads"] >= 1 and len(summary["machine"]["load_average_1_5_15"]) == 3
    log = (tmp_path / "sft" / "metrics.jsonl").read_text()
    header = json.loads((tmp_path / "warmup" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"] == str(tmp_path / "sft" / "checkpoints" / "step-1")  # SFT's step is not trained twice
    again = run_demo(str(tmp_path), TINY)  # finished: evaluated again, not trained again
    assert (tmp_path / "sft" / "metrics.jsonl").read_text() == log
    assert again["results"]["sft"]["test"]["wer"] == summary["results"]["sft"]["test"]["wer"]
    with pytest.raises(ConfigError, match="train.max_steps: 2 there, 3 now"):
        run_demo(str(tmp_path), TINY + [("train.max_steps", 3)])
    run_demo(str(tmp_path), TINY + [("train.max_steps", 3)], overwrite="move")
    assert json.loads((tmp_path / "sft" / "results.json").read_text())["steps"] == 3
    assert json.loads((tmp_path / "sft.previous-1" / "results.json").read_text())["steps"] == 2
