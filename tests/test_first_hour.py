"""A new user's first hour: their own data is never silently replaced by G2P, the metric that picks `best` is theirs
to choose and checked before training, and TRL's names are answered with warmgen's."""

import json

import pytest

from warmgen.cli import main
from warmgen.config import WarmupConfig
from warmgen.config_files import load_config, parse_overrides
from warmgen.errors import ConfigError
from warmgen.tasks import load_task

TINY = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--train.max_steps", "2", "--train.batch_size", "4",
        "--train.eval_every", "1", "--warmup.max_warmup_length", "2"]


def own_data(folder, n: int = 12) -> list[str]:
    rows = [{"input": f"{w} {i}", "target": str(i)} for i, w in enumerate(["one", "two", "three", "four"] * (n // 4))]
    for split in ("train", "dev"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["--data.train_file", str(folder / "train.jsonl"), "--data.dev_file", str(folder / "dev.jsonl")]


def test_own_data_without_a_task_is_read_as_seq2seq_never_as_g2p(tmp_path):
    files = own_data(tmp_path)
    run = tmp_path / "run"
    assert main(["train", *files, *TINY, "--output_dir", str(run)]) == 0
    header = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert header["train_examples"] == 12  # not CMUdict's 120,082 words
    assert "data:\n  task: seq2seq" in (run / "config.yaml").read_text()  # what `auto` chose, said
    assert load_task(WarmupConfig()).name == "g2p"  # no data at all: the built-in task
    assert load_task(WarmupConfig(), {"train": [{"input": "a", "target": "b"}]}).name == "seq2seq"  # the API's rows


def test_the_metric_that_picks_best_is_the_users_and_is_checked_before_training(tmp_path, capsys):
    files = own_data(tmp_path)
    config = load_config(None, parse_overrides([*files, "--data.metrics", "[exact_match]"]))
    task = load_task(config)  # chrF, the task's own, is not reported: the first metric that is picks `best`
    assert (task.primary_metric, task.greater_is_better) == ("exact_match", True)
    config.train.metric_for_best_model = "chrf"
    with pytest.raises(ConfigError, match="train.metric_for_best_model 'chrf' is not a metric task seq2seq reports; it reports exact_match"):
        load_task(config)
    capsys.readouterr()
    assert main(["train", *files, *TINY, "--data.metrics", "[exactmatch]", "--output_dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "data.metrics: unknown metric 'exactmatch'" in err and not (tmp_path / "bad" / "metrics.jsonl").exists()
    run = tmp_path / "run"
    assert main(["train", *files, *TINY, "--data.metrics", "[exact_match, chrf]", "--train.metric_for_best_model", "exact_match",
                 "--output_dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = {row["step"]: row["dev/exact_match"] for row in rows if "dev/exact_match" in row}
    best = json.loads((run / "results.json").read_text())["best_step"]
    assert scores[best] == max(scores.values())  # the first of the highest, as transformers keeps it
    error_rates = load_config(None, parse_overrides(["--train.metric_for_best_model", "per"]))
    assert load_task(error_rates).greater_is_better is False


@pytest.mark.parametrize("given, suggested", [("--train.lr", "train.learning_rate"), ("--num_generations", "warmup.num_warmups"),
                                              ("--logging_steps", "train.log_every"), ("--beta", "warmup.kl_coef"),
                                              ("--max_completion_length", "warmup.max_warmup_length"),
                                              ("--dataset_name", "data.dataset")])
def test_trl_names_get_warmgens(given, suggested, capsys):
    assert main(["train", given, "1"]) == 2
    assert f"did you mean '{suggested}'?" in capsys.readouterr().err
