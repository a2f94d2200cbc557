"""scripts/prepare_data.py against stand-ins for the hub datasets (same names, configs, splits and
fields), so the files it writes are the ones the paper's recipes read."""

import importlib.util
import json
from pathlib import Path

import datasets
import pytest

from warmgen.config_files import load_config
from warmgen.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "scripts" / "prepare_data.py")
prepare_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_data)


def fake_hub(calls: list):
    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        n = 6
        if name == "EdinburghNLP/xsum":
            rows = [{"id": f"{split}{i}", "document": f"The {split} story number {i} is long.", "summary": f"Story {i}."} for i in range(n)]
        elif name == "baber/logiqa2":
            rows = [{"id": i, "answer": i % 4, "text": f"Passage {i}.", "question": "Which?", "options": ["a", "b", "c", "d"],
                     "type": "{}"} for i in range(n)]
        elif name == "facebook/flores":
            rows = [{"id": i, "sentence": f"{config} sentence {i}\nwith a break"} for i in range(n)]
        elif name.startswith("wmt/"):
            code = config.split("-")[0]
            rows = [{"translation": {code: f"{code} {i}" if i != 2 else " ", "en": f"en {i}"}} for i in range(n)]
        else:
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.")
        return datasets.Dataset.from_list(rows)

    return load_dataset


@pytest.fixture
def hub(monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(calls))
    return calls


def test_writes_what_the_paper_recipes_read(tmp_path, hub, monkeypatch):
    assert prepare_data.main(["--out", str(tmp_path), "--max-train", "4"]) == 0
    assert len((tmp_path / "xsum" / "train.jsonl").read_text().splitlines()) == 4  # --max-train
    assert len((tmp_path / "xsum" / "test.jsonl").read_text().splitlines()) == 6  # never cut
    row = json.loads((tmp_path / "logiqa2" / "dev.jsonl").read_text().splitlines()[1])
    assert row["options"] == ["a", "b", "c", "d"] and row["answer"] == 1
    assert (tmp_path / "flores200" / "devtest" / "zho_Hans.devtest").read_text().splitlines()[0] == "zho_Hans sentence 0 with a break"
    # The pair with an empty side is dropped from both sides, so the files stay aligned.
    assert (tmp_path / "translation" / "deu-eng" / "train.deu").read_text().splitlines() == ["de 0", "de 1", "de 3"]
    assert (tmp_path / "translation" / "deu-eng" / "train.eng").read_text().splitlines() == ["en 0", "en 1", "en 3"]
    monkeypatch.setenv("WARMGEN_DATA_ROOT", str(tmp_path))
    for recipe in ("t5-base-xsum", "llama-3.2-1b-logiqa", "mt5-base-fra-eng", "mt5-base-eng-zho"):
        task = load_task(load_config(ROOT / "configs" / "paper" / f"{recipe}.yaml", [("data.dev_size", 1)]))
        assert task.split("train") and task.split("test"), recipe


def test_existing_files_are_kept_unless_overwrite(tmp_path, hub):
    kept = tmp_path / "xsum" / "test.jsonl"
    kept.parent.mkdir(parents=True)
    kept.write_text("mine\n")
    assert prepare_data.main(["--out", str(tmp_path), "--only", "xsum"]) == 0
    assert kept.read_text() == "mine\n"
    assert prepare_data.main(["--out", str(tmp_path), "--only", "xsum", "--overwrite"]) == 0
    assert kept.read_text() != "mine\n" and not list(tmp_path.rglob("*.tmp"))


def test_one_side_of_a_pair_alone_is_refused(tmp_path, hub, capsys):
    side = tmp_path / "translation" / "rus-eng" / "dev.rus"
    side.parent.mkdir(parents=True)
    side.write_text("mine\n")
    assert prepare_data.main(["--out", str(tmp_path), "--only", "translation"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only one side exists" in err and side.read_text() == "mine\n"


def test_unreachable_hub_and_changed_schema_are_one_line_errors(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'EdinburghNLP/xsum' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert prepare_data.main(["--out", str(tmp_path), "--only", "xsum"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare_data: EdinburghNLP/xsum split train: cannot load it") and len(err.splitlines()) == 1
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list([{"article": "x"}]))
    assert prepare_data.main(["--out", str(tmp_path), "--only", "xsum"]) == 2
    assert "no field id, document, summary" in capsys.readouterr().err
    assert not (tmp_path / "xsum").exists()
