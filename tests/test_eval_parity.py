"""What a run logs for a checkpoint is what `warmgen eval` gives that checkpoint; an SFT warm start is scored as SFT."""

import json
import random

import pytest

from warmgen.cli import main

WORDS = ["dog", "bird", "fish", "horse", "mouse", "sheep", "goat", "duck", "cat", "cow", "hen", "pig", "rat", "owl", "fox"]


def spelling_rows(n: int, seed: int, chat: bool) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(WORDS) + rng.choice(WORDS)
        answer = " ".join(word.upper())
        rows.append({"messages": [{"role": "system", "content": "Spell the word."}, {"role": "user", "content": word},
                                  {"role": "assistant", "content": answer}]} if chat else {"input": word, "target": answer})
    return rows


def logged_dev(run) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["dev/chrf"] for row in rows if "dev/chrf" in row}


@pytest.mark.parametrize("preset, chat", [("llama-tiny", True), ("t5-tiny", False)])
def test_the_logged_dev_score_is_what_eval_gives_the_checkpoint(tmp_path, capsys, preset, chat):
    """A chat run's checkpoints once held the prompt template in place of the chat template it trained with, so
    `warmgen eval` (and the run's own final evaluation of `best`) read the dev prompts differently."""
    for split, n, seed in (("train", 200, 0), ("dev", 16, 1)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in spelling_rows(n, seed, chat)))
    run = tmp_path / "run"
    assert main(["train", "--data.task", "seq2seq", "--data.train_file", str(tmp_path / "train.jsonl"), "--data.dev_file",
                 str(tmp_path / "dev.jsonl"), "--data.test_file", str(tmp_path / "dev.jsonl"), "--model.name", preset,
                 "--model.vocab_size", "300", "--method", "warmup", "--warmup.max_warmup_length", "3", "--train.max_steps", "20",
                 "--train.eval_every", "10", "--train.batch_size", "8", "--train.learning_rate", "3e-3", "--data.max_source_length",
                 "256", "--train.save_checkpoints_at", "[10, 20]", "--output_dir", str(run)]) == 0
    logged = logged_dev(run)
    assert set(logged) == {10, 20} and any(logged.values())  # a score that could differ
    for step, value in logged.items():
        assert main(["eval", str(run / "checkpoints" / f"step-{step}"), "--split", "dev", "--output", str(tmp_path / f"eval{step}")]) == 0
        assert json.loads((tmp_path / f"eval{step}" / "results.json").read_text())["metrics"]["chrf"] == value, step
    results = json.loads((run / "results.json").read_text())
    assert results["splits"]["dev"]["chrf"] == logged[results["best_step"]]


def test_evaluations_during_the_sft_warm_start_decode_as_sft_and_are_never_the_best(tmp_path):
    from test_reliability import config

    from warmgen.train import train

    results = train(config(tmp_path, "warm", "--warmup.sft_warm_start_steps", "3", "--train.eval_every", "1"))
    rows = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    decoded = {row["step"]: row["dev/decoded_with_warmup"] for row in rows if "dev/decoded_with_warmup" in row}
    assert decoded == {1: False, 2: False, 3: False, 4: True, 5: True, 6: True}
    assert results["best_step"] > 3
