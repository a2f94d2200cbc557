import pytest

from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides
from warmgen.tasks import load_task


def test_g2p_split_is_deterministic_and_disjoint():
    config = load_config(None)
    task = load_task(config)
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    assert sizes == {"test": 2000, "dev": 2000, "train": 120082}
    words = [set(e.source for e in rows) for rows in task.splits.values()]
    assert not (words[0] & words[1]) and not (words[0] & words[2]) and not (words[1] & words[2])
    again = load_task(config)
    assert [e.source for e in again.splits["test"][:50]] == [e.source for e in task.splits["test"][:50]]
    example = next(e for e in task.splits["train"] if e.source == "hello") if any(e.source == "hello" for e in task.splits["train"]) else None
    if example:
        assert example.target == "HH AH0 L OW1"
    # Limited splits are the first examples of the whole ones, also where dev is drawn from train.
    limited = load_task(load_config(None, parse_overrides(["--max_train_examples", "30", "--max_dev_examples", "5",
                                                          "--max_test_examples", "7"])))
    for name, size in (("train", 30), ("dev", 5), ("test", 7)):
        assert [vars(e) for e in limited.splits[name]] == [vars(e) for e in task.splits[name][:size]]
    drawn = ["--g2p_dev_size", "0", "--dev_size", "10", "--max_train_examples", "30"]
    whole = load_task(load_config(None, parse_overrides(drawn[:4])))
    limited = load_task(load_config(None, parse_overrides(drawn)))
    assert [e.source for e in limited.splits["dev"]] == [e.source for e in whole.splits["dev"]]
    assert [e.source for e in limited.splits["train"]] == [e.source for e in whole.splits["train"][:30]]


def test_seq2seq_task_from_files(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"src": "a b", "tgt": "B A"}\n{"src": "c", "tgt": "C"}\n')
    (tmp_path / "dev.tsv").write_text("a\tA\n")
    (tmp_path / "test.src").write_text("x\n")
    (tmp_path / "test.tgt").write_text("X\n")
    config_file = tmp_path / "c.yaml"
    config_file.write_text("data:\n  task: seq2seq\n  train_file: train.jsonl\n  dev_file: dev.tsv\n  test_file: test\n"
                           "  source_field: src\n  target_field: tgt\n")
    task = load_task(load_config(config_file))
    assert len(task.split("train")) == 2 and task.split("dev")[0].target == "A" and task.split("test")[0].source == "x"
    assert task.metrics == ["chrf", "bleu"]


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task"):
        load_task(load_config(None, parse_overrides(["--task", "poetry"])))
