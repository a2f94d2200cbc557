"""Translation, summarization and multiple choice on tiny slices of each format."""

import json

import pytest
import torch
from conftest import tiny

from warmgen.cli import main
from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides
from warmgen.decode import score_options
from warmgen.metrics import compute, parse_choice
from warmgen.records import DataError
from warmgen.tasks import load_task


def test_chinese_bleu_uses_the_zh_tokenizer():
    refs, hyps = ["今天天气很好。"], ["今天天气很好"]
    zh = compute(["bleu"], hyps, refs, bleu_tokenize="zh")
    plain = compute(["bleu"], hyps, refs, bleu_tokenize="13a")
    assert "tok:zh" in zh["bleu_signature"] and zh["bleu"] > 50 and plain["bleu"] == 0.0


def test_rouge_matches_a_hand_computed_value():
    # ref "the cat sat on the mat" (6 tokens), hyp "the cat lay on a mat" (6 tokens)
    # ROUGE-1: overlap the, cat, on, mat = 4 -> P = R = F = 4/6; ROUGE-2: "the cat" only -> 1/5.
    # ROUGE-L: LCS the cat on mat = 4 -> 4/6.
    scores = compute(["rouge"], ["the cat lay on a mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 4 / 6)
    assert scores["rouge2"] == pytest.approx(100 * 1 / 5)
    assert scores["rougeL"] == pytest.approx(100 * 4 / 6)


def test_macro_f1_on_a_confusion_case():
    refs = ["A. x", "A. x", "B. y", "B. y", "C. z"]
    hyps = ["A. x", "B. y", "B. y", "A. x", "garbage"]
    # A: tp 1, predicted 2, actual 2 -> F1 0.5; B: same -> 0.5; C: tp 0 -> 0. Macro = 1/3.
    scores = compute(["accuracy", "macro_f1"], hyps, refs)
    assert scores["macro_f1"] == pytest.approx(1 / 3)
    assert scores["accuracy"] == pytest.approx(2 / 5) and scores["unparseable"] == pytest.approx(1 / 5)
    assert [parse_choice(t) for t in ("B", "(C) because", "D. text", "All of them", "")] == [1, 2, 3, None, None]


def test_option_scoring_ignores_padding():
    """Scoring options in a padded batch gives the same numbers as one example at a time."""
    model, layout, _ = tiny("llama-tiny")
    sources = [layout.source_ids(s)[0] for s in ("the cat sat on the mat", "hello")]
    options = [[layout.target_ids(o)[0] for o in ("A. cat", "B. the mat", "C. W AO1")]] * 2
    warmups = [[5, 6, 7], None]
    batched, counts = score_options(model, layout, sources, warmups, options)
    for i in range(2):
        alone, alone_counts = score_options(model, layout, [sources[i]], [warmups[i]], [options[i]])
        assert torch.allclose(torch.tensor(batched[i]), torch.tensor(alone[0]), atol=1e-5) and counts[i] == alone_counts[0]


def make_translation(tmp_path):
    root = tmp_path / "data"
    (root / "pair").mkdir(parents=True, exist_ok=True)
    (root / "flores").mkdir(exist_ok=True)
    de = ["ein Haus", "eine Katze", "der Hund", "ein Baum"]
    en = ["a house", "a cat", "the dog", "a tree"]
    for split in ("train", "dev"):
        (root / "pair" / f"{split}.deu").write_text("\n".join(de) + "\n")
        (root / "pair" / f"{split}.eng").write_text("\n".join(en) + "\n")
    (root / "flores" / "deu_Latn.devtest").write_text("\n".join(de[:2]))
    (root / "flores" / "eng_Latn.devtest").write_text("\n".join(en[:2]))
    config = tmp_path / "mt.yaml"
    config.write_text("data:\n  task: translation\n  source_lang: deu\n  target_lang: eng\n"
                      "  train_file: data/pair/train.{lang}\n  dev_file: data/pair/dev.{lang}\n"
                      "  test_file: data/flores/{flores}.devtest\n  source_prefix: '<2{target_name}> '\n")
    return config


def test_translation_reads_templates_and_tags_direction(tmp_path):
    task = load_task(load_config(make_translation(tmp_path)))
    test = task.split("test")
    assert [e.source for e in test] == ["<2English> ein Haus", "<2English> eine Katze"]
    assert test[0].target == "a house" and test[0].extra["direction"] == "deu-eng"
    assert task.metric_options["bleu_tokenize"] == "13a" and "comet" in task.skipped


def test_translation_errors(tmp_path):
    config = load_config(make_translation(tmp_path), parse_overrides(["--data.train_file", "data/pair/train.deu"]))
    with pytest.raises(ConfigError, match=r"needs \{lang\} or \{flores\}"):
        load_task(config)
    config = load_config(make_translation(tmp_path), parse_overrides(["--target_lang", "xyz"]))
    with pytest.raises(ConfigError, match="no FLORES-200 code known for 'xyz'"):
        load_task(config)
    make_translation(tmp_path)
    (tmp_path / "data" / "pair" / "train.eng").write_text("a\nb\n")
    with pytest.raises(DataError, match="train.deu has 4 lines but .*train.eng has 2"):
        load_task(load_config(tmp_path / "mt.yaml"))


LOGIQA = [
    {"id": i, "answer": i % 4, "text": f"Context number {i}.", "question": "Which follows?",
     "options": ["alpha", "beta", "gamma", "delta"], "type": {}} for i in range(12)
]


def write_logiqa(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.parametrize("field, value, message", [
    ("answer", 7, "field 'answer' is 7, not an index into 4 options"),
    ("options", "abcd", "field 'options' must be a list"),
    ("question", None, "field 'question' must be a str"),
])
def test_malformed_logiqa_names_file_line_field(tmp_path, field, value, message):
    rows = [dict(r) for r in LOGIQA[:3]]
    rows[1][field] = value
    write_logiqa(tmp_path / "mc.jsonl", rows)
    config = load_config(None, parse_overrides(["--task", "multiple_choice", "--data.train_file", str(tmp_path / "mc.jsonl")]))
    with pytest.raises(DataError, match=rf"mc.jsonl:2: {message}"):
        load_task(config)


def test_multiple_choice_end_to_end(tmp_path):
    write_logiqa(tmp_path / "train.jsonl", LOGIQA)
    write_logiqa(tmp_path / "test.jsonl", LOGIQA[:4])
    run = tmp_path / "run"
    assert main(["train", "--model.name", "llama-tiny", "--model.vocab_size", "300", "--task", "multiple_choice",
                 "--data.train_file", str(tmp_path / "train.jsonl"), "--data.test_file", str(tmp_path / "test.jsonl"),
                 "--data.dev_size", "4", "--train.max_steps", "2", "--train.batch_size", "4", "--warmup.max_warmup_length", "3",
                 "--data.max_target_length", "8", "--output_dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())["splits"]["test"]
    for key in ("accuracy", "macro_f1", "unparseable", "options/accuracy", "options_norm/macro_f1"):
        assert 0 <= results[key] <= 1, key
    row = json.loads((run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()[0])
    assert len(row["option_logp"]) == 4 and row["warmup"] is not None

    # Options scored after a given warmup (the fixed-warmup control), with no letter generated.
    fixed = tmp_path / "fixed"
    assert main(["eval", str(run), "--data.mc_eval", "options", "--warmup.fixed_warmup", "ab", "--output", str(fixed)]) == 0
    rows = [json.loads(line) for line in (fixed / "predictions.jsonl").read_text().splitlines()]
    assert {r["warmup"] for r in rows} == {"ab"} and all(len(r["option_logp"]) == 4 and r["prediction"] is None for r in rows)


def test_summarization_end_to_end(tmp_path):
    docs = [{"id": str(i), "document": f"The council met on day {i} and agreed a new budget for roads.", "summary": f"Budget agreed on day {i}."}
            for i in range(10)]
    (tmp_path / "xsum.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    run = tmp_path / "run"
    assert main(["train", "--model.name", "t5-tiny", "--model.vocab_size", "300", "--task", "summarization",
                 "--data.source_field", "document", "--data.target_field", "summary", "--data.train_file", str(tmp_path / "xsum.jsonl"),
                 "--data.test_file", str(tmp_path / "xsum.jsonl"), "--data.dev_size", "2", "--data.max_source_length", "8",
                 "--train.max_steps", "2", "--train.batch_size", "4", "--warmup.max_warmup_length", "3",
                 "--data.max_target_length", "8", "--output_dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())["splits"]["test"]
    assert {"rouge1", "rouge2", "rougeL"} <= set(results) and "bertscore" in results["skipped"]
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["truncated_sources"] == 8  # every document is longer than 8 tokens


def test_translation_end_to_end_with_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("warmgen.evaluate._noted", set())  # the skip note prints once per process; earlier tests may have printed it
    config = make_translation(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--model.name", "t5-tiny", "--model.vocab_size", "300",
                 "--train.max_steps", "2", "--train.batch_size", "2", "--warmup.max_warmup_length", "3",
                 "--output_dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "comet skipped: set data.comet_model" in out
    # The checkpoint finds the config-relative data files wherever eval is run from.
    monkeypatch.chdir(tmp_path / "data")
    assert main(["eval", str(run), "--split", "dev"]) == 0
    results = json.loads((run / "results.json").read_text())["splits"]["test"]
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in results["bleu_signature"] and "chrf" in results
