"""Chat data for decoder-only models, in TRL's columns: `messages` lists, and `prompt`/`completion` as
texts or as turns. The prompt goes through the tokenizer's chat template (system prompt and earlier
turns included), the assistant's last turn is the target."""

import json

import datasets
import pytest
from conftest import tiny
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgen import ConfigError, DataError, WarmupConfig, WarmupTrainer, generate
from warmgen.cli import main
from warmgen.records import Example, dataset_records, text_examples

SYSTEM = {"role": "system", "content": "Spell the word."}


def chat(word: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": "cat"}, {"role": "assistant", "content": "C A T"},
            {"role": "user", "content": word}, {"role": "assistant", "content": " ".join(word.upper())}]


WORDS = ["dog", "bird", "fish", "horse", "mouse", "sheep", "goat", "duck"]


def examples(rows):
    return text_examples(dataset_records(rows, "train_dataset"), "input", "target")


def test_messages_and_prompt_completion_rows_become_the_same_examples():
    turns = chat("dog")
    by_messages = examples([{"messages": turns}])
    by_turns = examples([{"prompt": turns[:-1], "completion": turns[-1:]}])
    assert by_messages == by_turns == [Example("train_dataset:0", "dog", "D O G", messages=turns[:-1])]
    assert by_messages[0].prompt == turns[:-1]
    text = examples([{"prompt": "dog", "completion": "D O G", "id": 7}])  # TRL's standard (non-chat) prompt-completion
    assert text == [Example("7", "dog", "D O G")] and text[0].prompt == "dog"
    # The configured fields win over the TRL ones when a row has both.
    assert examples([{"input": "x", "target": "X", "messages": turns}]) == [Example("train_dataset:0", "x", "X")]


@pytest.mark.parametrize("row, message", [
    ({"messages": "hello"}, r"train_dataset\[0\]: field 'messages' must be a non-empty list of .* got str"),
    ({"messages": []}, r"field 'messages' must be a non-empty list"),
    ({"messages": [{"role": "user"}]}, r"field 'messages' item 0: expected a message with a text 'role' and 'content'"),
    ({"messages": [{"role": "user", "content": "x"}]}, r"must end with an assistant turn .* it has 1 ending with 'user'"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}, r"ending with 'user'"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]}, r"the assistant's answer \(the target\) is empty"),
    ({"prompt": [{"role": "user", "content": "x"}], "completion": [{"role": "user", "content": "y"}]},
     r"field 'completion' must be one assistant turn, got 1 turns \(user\)"),
    ({"prompt": "x", "completion": 3}, r"field 'completion' must be a string, got int"),
    ({"text": "x"}, r"field 'input' is missing \(fields present: text; set data.source_field .* or give TRL's prompt/completion or messages"),
])
def test_bad_chat_rows_name_the_row_and_the_field(row, message):
    with pytest.raises(DataError, match=message):
        examples([row])


def test_the_prompt_is_the_chat_template_of_the_turns_and_a_long_chat_keeps_its_end():
    model, layout, config = tiny("llama-tiny")
    turns = chat("dog")[:-1]
    rendered = layout.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<s><|im_start|>system\nSpell the word.<|im_end|>") and rendered.endswith("<|im_start|>assistant\n")
    layout.max_source_length = 1000
    ids, cut = layout.source_ids(turns)
    assert ids == layout.tokenizer(rendered, add_special_tokens=False)["input_ids"] and not cut
    assert ids.count(layout.tokenizer.bos_token_id) == 1  # the template's BOS, not a second one from the tokenizer
    layout.max_source_length = 5
    assert layout.source_ids(turns) == (ids[-5:], True)


def test_chat_needs_a_decoder_only_model_with_a_chat_template():
    _, layout, _ = tiny("t5-tiny")
    with pytest.raises(ConfigError, match="chat data .* needs a decoder-only model"):
        layout.source_ids(chat("dog")[:-1])
    _, layout, _ = tiny("llama-tiny")
    layout.tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="has no chat template"):
        layout.source_ids(chat("dog")[:-1])


def test_training_runs_from_a_messages_file_and_a_chat_dataset(tmp_path):
    rows = [{"messages": chat(w)} for w in WORDS * 2]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"prompt": chat(w)[:-1], "completion": chat(w)[-1:]}) + "\n" for w in WORDS[:3]))
    run = tmp_path / "cli"
    assert main(["train", "--data.task", "seq2seq", "--data.train_file", str(tmp_path / "train.jsonl"), "--data.test_file",
                 str(tmp_path / "test.jsonl"), "--data.max_source_length", "256", "--model.name", "llama-tiny", "--model.vocab_size",
                 "300", "--method", "warmup", "--warmup.max_warmup_length", "3", "--train.max_steps", "2", "--train.batch_size", "4",
                 "--output_dir", str(run)]) == 0
    predictions = [json.loads(line) for line in (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert [(p["source"], p["target"]) for p in predictions] == [(w, " ".join(w.upper())) for w in WORDS[:3]]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["truncated_sources"] == 0

    config = WarmupConfig(output_dir=str(tmp_path / "api"))
    config.model.name, config.model.vocab_size, config.data.task = "llama-tiny", 300, "seq2seq"
    config.data.max_source_length, config.train.max_steps, config.train.batch_size = 256, 2, 4
    config.warmup.max_warmup_length = 3
    trainer = WarmupTrainer(args=config, train_dataset=datasets.Dataset.from_list(rows))
    trainer.train()
    pairs = generate(trainer.model, trainer.tokenizer, [chat("goat")[:-1], "goat"], trainer.args)
    assert len(pairs) == 2 and all(isinstance(warmup, str) for warmup, _ in pairs)


def test_a_source_prefix_is_refused_for_chat_data(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"messages": chat("dog")}) + "\n")
    config = WarmupConfig()
    config.data.task, config.data.train_file, config.data.source_prefix = "seq2seq", str(tmp_path / "train.jsonl"), "spell: "
    from warmgen.tasks import load_task

    with pytest.raises(ConfigError, match="data.source_prefix prefixes text sources; chat data has turns"):
        load_task(config)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.sampled_from(["", " ", "user", "assistant", "system", "x"]),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["role", "content", "name"]), inner, max_size=3),
                           max_leaves=12)
turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", 3]), "content": st.sampled_from(["", "hi", "A B", None])})
chat_rows = st.dictionaries(st.sampled_from(["messages", "prompt", "completion", "id"]), json_values | st.lists(turn, max_size=4), max_size=3)


@settings(max_examples=300, deadline=None)
@given(row=chat_rows)
def test_any_chat_shaped_row_is_an_example_or_a_one_line_error(row):
    try:
        [example] = examples([row])
    except DataError as err:
        assert str(err).startswith("train_dataset[0]: ") and "\n" not in str(err)
        return
    assert example.target.strip() and example.source.strip() or example.messages is not None
    if example.messages is not None:
        assert example.messages and all(set(m) == {"role", "content"} for m in example.messages) and example.target.strip()
