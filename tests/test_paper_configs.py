"""Every recipe in configs/paper/ trains 2 steps and evaluates, with a tiny model of its family
(mT5, T5, Llama; no hub) on a few generated examples in the formats its data paths name."""

import json
from pathlib import Path

import pytest

from warmgen.config_files import load_config, parse_overrides
from warmgen.train import train

PAPER = Path(__file__).resolve().parent.parent / "configs" / "paper"
FAMILY = {"google/mt5-base": "mt5-tiny", "google-t5/t5-base": "t5-tiny", "meta-llama/Llama-3.2-1B": "llama-tiny"}
FLORES = {"deu": "deu_Latn", "fra": "fra_Latn", "rus": "rus_Cyrl", "zho": "zho_Hans", "eng": "eng_Latn"}
WORDS = ["sun", "moon", "star", "tree", "river", "stone", "cloud", "field", "house", "road", "light", "wind"]


def data_root(folder: Path) -> Path:
    """Tiny stand-ins for ../shared/data: parallel text, FLORES devtest, XSum and LogiQA 2.0 JSONL."""
    for lang in ("deu", "fra", "rus", "zho"):
        pair = folder / "translation" / f"{lang}-eng"
        pair.mkdir(parents=True)
        for split in ("train", "dev"):
            for side in (lang, "eng"):
                (pair / f"{split}.{side}").write_text("".join(f"{side} {w} {i}\n" for i, w in enumerate(WORDS)))
    flores = folder / "flores200" / "devtest"
    flores.mkdir(parents=True)
    for code in FLORES.values():
        (flores / f"{code}.devtest").write_text("".join(f"{code} {w}\n" for w in WORDS[:4]))
    (folder / "xsum").mkdir()
    for split in ("train", "test"):
        (folder / "xsum" / f"{split}.jsonl").write_text("".join(
            json.dumps({"document": f"the {w} was seen near the {v} today", "summary": f"{w} seen"}) + "\n"
            for w, v in zip(WORDS, reversed(WORDS))))
    (folder / "logiqa2").mkdir()
    for split in ("train", "dev", "test"):
        (folder / "logiqa2" / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": i, "text": f"Every {w} is bright.", "question": "Which follows?",
                        "options": [f"a {w} is bright", f"no {w} is bright", "nothing", "all are dark"], "answer": i % 4}) + "\n"
            for i, w in enumerate(WORDS)))
    return folder


@pytest.mark.parametrize("recipe", sorted(p.name for p in PAPER.glob("*.yaml")))
def test_paper_recipe_trains_with_a_tiny_model_of_its_family(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("WARMGEN_DATA_ROOT", str(data_root(tmp_path / "data")))
    config = load_config(str(PAPER / recipe))
    assert config.model.name in FAMILY, f"{recipe}: add its model's tiny stand-in to FAMILY"
    small = ["--model.name", FAMILY[config.model.name], "--model.vocab_size", "300", "--train.max_steps", "2",
             "--train.batch_size", "4", "--train.gradient_accumulation_steps", "1", "--data.max_test_examples", "2",
             "--data.max_dev_examples", "2", "--data.max_source_length", "48", "--data.max_target_length", "8",
             "--warmup.max_warmup_length", "4",
             "--output_dir", str(tmp_path / "run")]
    config = load_config(str(PAPER / recipe), parse_overrides(small + (["--data.dev_size", "4"] if config.data.dev_size else [])))
    results = train(config)
    assert results["steps"] == 2 and results["splits"]["test"]["num_examples"] == 2
