"""CSV files and JSON arrays as training data: read like JSONL, errors name file, line (or item) and field."""

import json

import pytest

from warmgen.config_files import load_config, parse_overrides
from warmgen.records import DataError, csv_records, json_array_records, text_examples
from warmgen.tasks import load_task
from warmgen.train import train

ROWS = [{"input": f"word{i}", "target": f"W {i}"} for i in range(12)]


def read(path, reader):
    return [(e.source, e.target) for e in text_examples(reader(path), "input", "target")]


def test_csv_and_json_arrays_read_the_same_examples_as_jsonl(tmp_path):
    (tmp_path / "d.csv").write_text("input,target,note\n" + "".join(f'{r["input"]},"{r["target"]}",x\n' for r in ROWS))
    (tmp_path / "d.json").write_text(json.dumps(ROWS, indent=1))
    expected = [(r["input"], r["target"]) for r in ROWS]
    assert read(tmp_path / "d.csv", csv_records) == read(tmp_path / "d.json", json_array_records) == expected
    (tmp_path / "q.csv").write_text('input,target\n"a, quoted\nfield",T\n', encoding="utf-8")
    assert read(tmp_path / "q.csv", csv_records) == [("a, quoted\nfield", "T")]


@pytest.mark.parametrize("name, text, message", [
    ("a.csv", "input,label\nx,y\n", r"a.csv:2: field 'target' is missing \(fields present: input, label; set data.target_field"),
    ("b.csv", "input,target\nx,y,z\n", r"b.csv:2: more columns than the header's 2"),
    ("c.csv", "input,target\nx,\n", r"c.csv:2: field 'target' is empty"),
    ("d.json", '[{"input": "x", "target": "y"}, 3]', r"d.json: item 1: expected a JSON object, got int"),
    ("e.json", '{"input": "x"}', r"e.json: expected a JSON array of objects"),
    ("f.json", '[{"input": "x", "target": "y"},\n {"input": }]', r"f.json:2: not valid JSON"),
])
def test_bad_rows_name_the_file_the_row_and_the_field(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    reader = csv_records if name.endswith(".csv") else json_array_records
    with pytest.raises(DataError, match=message):
        read(tmp_path / name, reader)


def test_training_runs_from_a_csv_file_and_a_json_array(tmp_path):
    (tmp_path / "train.csv").write_text("input,target\n" + "".join(f'{r["input"]},{r["target"]}\n' for r in ROWS))
    (tmp_path / "dev.json").write_text(json.dumps(ROWS[:3]))
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]))  # .json with one object per line
    args = ["--data.task", "seq2seq", "--data.train_file", str(tmp_path / "train.csv"), "--data.dev_file", str(tmp_path / "dev.json"),
            "--data.test_file", str(tmp_path / "lines.json"), "--model.name", "t5-tiny", "--model.vocab_size", "300",
            "--method", "sft", "--train.max_steps", "2", "--train.batch_size", "4", "--output_dir", str(tmp_path / "run")]
    config = load_config(None, parse_overrides(args))
    task = load_task(config)
    assert len(task.split("train")) == 12 and len(task.split("dev")) == 3 and len(task.split("test")) == 3
    assert train(config)["splits"]["test"]["num_examples"] == 3


def test_a_saved_hugging_face_dataset_is_read_by_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "validation": datasets.Dataset.from_list(ROWS[:3])}
                         ).save_to_disk(str(tmp_path / "dict"))
    datasets.Dataset.from_list(ROWS[:5]).save_to_disk(str(tmp_path / "one"))
    base = ["--data.task", "seq2seq", "--model.name", "t5-tiny"]
    task = load_task(load_config(None, parse_overrides(base + ["--data.dataset", str(tmp_path / "dict")])))
    assert len(task.split("train")) == 12 and [e.source for e in task.split("dev")] == ["word0", "word1", "word2"]
    assert task.split("dev")[0].id == "eval_dataset:0"
    assert len(load_task(load_config(None, parse_overrides(base + ["--data.dataset", str(tmp_path / "one")]))).split("train")) == 5
    with pytest.raises(DataError, match="data.dataset '.*nowhere': cannot load it"):
        load_task(load_config(None, parse_overrides(base + ["--data.dataset", str(tmp_path / "nowhere")])))
