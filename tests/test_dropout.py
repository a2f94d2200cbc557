"""model.dropout and where it matters: warmup.merge_repeats `auto` merges only when there is none."""

import json

import pytest
import torch
from conftest import TEXTS, tiny
from test_cli import TINY

from warmgen.cli import main
from warmgen.config import WarmupOptions
from warmgen.models import build_preset, has_dropout, load_pretrained, set_dropout
from warmgen.warmup import merges_repeats


def training_forward(model, layout):
    """Logits of one training-mode forward pass (dropout active if the model has any)."""
    model.train()
    scores = layout.score(model, [layout.source_ids("hello world")[0]] * 2, [[5, 6], [7]], [layout.target_ids("HH AH0")[0]] * 2)
    return torch.stack([scores.logp_warmup, scores.logp_target])


@pytest.mark.parametrize("preset", ["t5-tiny", "gpt2-tiny", "llama-tiny", "bart-tiny"])
def test_set_dropout_turns_every_rate_on_and_off(tmp_path, preset):
    model, layout, _ = tiny(preset)
    assert not has_dropout(model)  # presets train from scratch without dropout
    set_dropout(model, 0.3)
    assert has_dropout(model)
    assert not torch.equal(training_forward(model, layout), training_forward(model, layout))
    set_dropout(model, 0.0)
    assert not has_dropout(model)
    assert torch.equal(training_forward(model, layout), training_forward(model, layout))  # nothing random left
    set_dropout(model, 0.2)
    model.save_pretrained(tmp_path / "saved")
    layout.tokenizer.save_pretrained(tmp_path / "saved")
    assert has_dropout(load_pretrained(str(tmp_path / "saved"))[0])  # the config fields were set too


def test_llama_attention_dropout_counts_as_dropout():
    """Llama has no dropout modules, only a rate its attention hands to the kernel."""
    model, _ = build_preset("llama-tiny", TEXTS, vocab_size=300)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    model.model.layers[0].self_attn.attention_dropout = 0.1
    assert has_dropout(model)


def test_merge_repeats_auto_merges_only_without_dropout():
    auto, on, off = (WarmupOptions(merge_repeats=m) for m in ("auto", True, False))
    assert merges_repeats(auto, dropout=False) and not merges_repeats(auto, dropout=True)
    assert merges_repeats(on, dropout=True) and not merges_repeats(off, dropout=False)
    assert merges_repeats(WarmupOptions(merge_repeats=False, rank_by="joint"), dropout=True)  # joint's marginal counts each once


@pytest.mark.parametrize("dropout,merged", [(None, True), ("0.1", False)])
def test_train_header_says_whether_repeats_are_merged(tmp_path, dropout, merged):
    run = tmp_path / "run"
    overrides = [] if dropout is None else ["--model.dropout", dropout]
    assert main(["train", *TINY, "--train.max_steps", "1", "--train.eval_every", "0", "--data.max_test_examples", "1",
                 *overrides, "--output_dir", str(run)]) == 0
    header = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert header["dropout"] is not merged and header["merge_repeats"] is merged


def test_merged_repeats_train_the_same_without_dropout(tmp_path):
    """The real loop on a Llama (no dropout) sampling with top_k 1, so the k draws repeat:
    `auto` scores fewer rows than `false` and logs the same losses."""
    logs = {}
    for merge in ("auto", "false"):
        run = tmp_path / merge
        assert main(["train", *TINY, "--model.name", "llama-tiny", "--train.max_steps", "3", "--train.eval_every", "0",
                     "--data.max_test_examples", "1", "--warmup.top_k", "1", "--warmup.merge_repeats", merge,
                     "--output_dir", str(run)]) == 0
        logs[merge] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert all(r["warmup/scored"] == 1 for r in logs["auto"]) and all(r["warmup/scored"] == 4 for r in logs["false"])
    assert [r["loss"] for r in logs["auto"]] == pytest.approx([r["loss"] for r in logs["false"]], abs=1e-5)
