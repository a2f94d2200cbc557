"""Pause tokens (`method: pause`): a learnt `<pause>` token repeated between x and y, no loss on its
positions, and appended (not generated) at inference; for both model families."""

import json

import pytest
import torch
from conftest import tiny

from warmgen.cli import main
from warmgen.decode import decode
from warmgen.methods import PAUSE, add_method_tokens, fixed_warmup, step_options
from warmgen.warmup import warmup_step


def pause_model(preset, num_tokens=3):
    model, layout, config = tiny(preset)
    config.method = "pause"
    config.pause.num_tokens = num_tokens
    add_method_tokens(model, layout.tokenizer, config)
    return model, layout, config


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_the_loss_is_the_answers_alone_after_the_pauses(preset):
    model, layout, config = pause_model(preset, num_tokens=10)  # longer than warmup.max_warmup_length: never cut
    pauses = fixed_warmup(layout, config)
    assert pauses == [layout.tokenizer.convert_tokens_to_ids(PAUSE)] * 10 and len(set(pauses + [layout.sep_id])) == 2
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    step = warmup_step(model, layout, sources, targets, step_options(config), [pauses, pauses], [0, 0])
    (step.objective / step.tokens).backward()
    stepped = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    scores = layout.score(model, sources, [pauses, pauses], targets)  # log P(y </s> | x, pauses <sep>), brute force
    assert step.objective.item() == pytest.approx(scores.logp_target.sum().item(), rel=1e-6)
    assert step.tokens.item() == scores.n_target.sum().item() == sum(len(t) + 1 for t in targets)
    (scores.logp_target.sum() / scores.n_target.sum()).backward()
    for a, p in zip(stepped, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    pause_row = model.get_input_embeddings().weight.grad[pauses[0]]
    assert pause_row.abs().sum() > 0  # the pause embedding is learnt, through what follows it


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_decoding_appends_the_pauses_and_generates_only_the_answer(preset):
    model, layout, config = pause_model(preset)
    generations = decode(model, layout, [layout.source_ids(s)[0] for s in ("hello", "world")], True, config)
    assert [g.warmup for g in generations] == [fixed_warmup(layout, config)] * 2
    assert all(PAUSE not in layout.tokenizer.decode(g.target) for g in generations)


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_pause_trains_and_evaluates_from_the_cli(tmp_path, preset):
    run = tmp_path / "pause"
    assert main(["train", "--method", "pause", "--pause.num_tokens", "4", "--model.name", preset, "--data.max_train_examples", "16",
                 "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "2", "--train.batch_size", "8",
                 "--data.max_target_length", "16", "--output_dir", str(run)]) == 0
    predictions = [json.loads(line) for line in (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert [p["warmup"].split() for p in predictions] == [[PAUSE] * 4] * 4
    assert json.loads((run / "results.json").read_text())["generated_tokens"] == 0  # nothing sampled in training
