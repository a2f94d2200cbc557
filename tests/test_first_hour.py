"""A new user's first hour: their own data is never silently replaced by G2P, the metric that picks `best` is theirs
to choose and checked before training, and TRL's names are answered with warmgen's."""

import json

import pytest

from warmgen.cli import main
from warmgen.config import WarmupConfig
from warmgen.config_files import load_config, parse_overrides
from warmgen.errors import ConfigError, DataError
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


def test_resume_with_only_the_run_folder_continues_with_its_own_config(tmp_path, capsys):
    files = own_data(tmp_path)
    run = tmp_path / "run"
    assert main(["train", *files, *TINY, "--train.max_steps", "3", "--train.stop_after_step", "1", "--output_dir", str(run)]) == 0
    assert main(["train", "--resume", "--output_dir", str(run)]) == 0  # its data, model and steps from config.yaml
    assert json.loads((run / "results.json").read_text())["steps"] == 3
    capsys.readouterr()
    assert main(["train", "--resume", "--output_dir", str(tmp_path / "none")]) == 2
    assert "holds no run to continue" in capsys.readouterr().err
    again = tmp_path / "again"
    assert main(["train", *files, *TINY, "--train.max_steps", "3", "--train.stop_after_step", "1", "--output_dir", str(again)]) == 0
    assert main(["train", "--resume", "--output_dir", str(again), "--train.learning_rate", "0.5"]) == 2
    assert "train.learning_rate: 0.001 there, 0.5 now" in capsys.readouterr().err  # a change to the computation, named


def test_the_api_resumes_from_a_path_and_loads_a_run_that_decodes_as_it_did(tmp_path):
    from warmgen import WarmupTrainer, generate, load_run

    rows = [{"input": f"{w} {i}", "target": str(i)} for i, w in enumerate(["one", "two", "three", "four"] * 3)]
    args = WarmupConfig(output_dir=str(tmp_path / "run"), model={"name": "t5-tiny", "vocab_size": 300},
                        train={"max_steps": 3, "stop_after_step": 1, "batch_size": 4}, warmup={"max_warmup_length": 2})
    assert WarmupTrainer(args=args, train_dataset=rows).train() is None  # stopped after step 1, as asked
    with pytest.raises(ConfigError, match="warmgen continues the run in args.output_dir"):
        WarmupTrainer(args=args, train_dataset=rows).train(resume_from_checkpoint=str(tmp_path / "elsewhere"))
    args.train.stop_after_step = 0  # on to the end now
    trainer = WarmupTrainer(args=args, train_dataset=rows)
    assert trainer.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoints" / "last")).global_step == 3
    model = trainer.model
    loaded, tokenizer, config = load_run(tmp_path / "run")
    assert config.warmup.max_warmup_length == 2
    assert generate(loaded, tokenizer, ["one 5"]) == generate(loaded, tokenizer, ["one 5"], config)
    assert generate(model, trainer.tokenizer, ["one 5"]) == generate(loaded, tokenizer, ["one 5"])  # the trained model too
    del loaded.warmgen_config  # a model from elsewhere: warmgen's defaults, said
    with pytest.warns(UserWarning, match="generate: no args, and the model comes from no warmgen run"):
        generate(loaded, tokenizer, ["one 5"])


def test_help_says_what_each_key_does_and_where_overrides_go(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("--")}
    texts = [lines[key].split(None, 2)[2] for key in ("--train.log_every", "--train.save_every", "--data.source_field",
                                                       "--data.format", "--model.lora_alpha", "--model.lora_rank")]
    assert len(set(texts)) == len(texts)  # no key shows another's text
    assert "e.g. 0.1 to regularise" in lines["--model.dropout"]
    for command in ("eval", "generate", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--section.key value" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "allow_mixed_machines" in capsys.readouterr().out


def test_the_trainer_speaks_trls_language(tmp_path):
    from conftest import tiny

    from warmgen import WarmupTrainer, load_run

    model, layout, _ = tiny("t5-tiny")
    rows = [{"input": f"{w} {i}", "target": str(i)} for i, w in enumerate(["one", "two", "three", "four"] * 3)]
    args = WarmupConfig(output_dir=str(tmp_path / "run"), train={"max_steps": 2, "batch_size": 4, "eval_every": 1, "log_every": 1},
                        warmup={"max_warmup_length": 2})
    trainer = WarmupTrainer(model=model, processing_class=layout.tokenizer, args=args, train_dataset=rows, eval_dataset=rows[:4])
    assert trainer.processing_class is trainer.tokenizer is layout.tokenizer
    trainer.train()
    state = trainer.state
    assert state.global_step == 2 and [row["step"] for row in state.log_history if "loss" in row] == [1, 2]
    assert state.best_model_checkpoint == trainer.results["checkpoint"] and trainer.results["metric_for_best_model"] == "chrf"
    assert state.best_metric == max(row["dev/chrf"] for row in state.log_history if "dev/chrf" in row and row["step"] >= 1)
    trainer.save_model(tmp_path / "saved")
    assert load_run(tmp_path / "saved").config.train.max_steps == 2


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    from test_reliability import config

    from warmgen.train import train

    full = train(config(tmp_path, "full", "--train.eval_every", "1", "--train.max_steps", "8", "--train.learning_rate", "1.0e-9"))
    assert not full["stopped_early"] and full["steps"] == 8
    results = train(config(tmp_path, "early", "--train.eval_every", "1", "--train.max_steps", "8", "--train.learning_rate", "1.0e-9",
                           "--train.early_stopping_patience", "2"))
    rows = [json.loads(line) for line in (tmp_path / "early" / "metrics.jsonl").read_text().splitlines()]
    scores = [row["dev/wer"] for row in rows if "dev/wer" in row]  # a learning rate that moves nothing: no improvement
    assert results["stopped_early"] and not results["stopped_by_time_budget"] and results["steps"] == 3 == len(scores)
    assert results["best_step"] == 1


def test_a_datasets_configuration_is_passed_to_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, subset=None: asked.append((name, subset)) or
                        datasets.DatasetDict({"train": datasets.Dataset.from_list([{"input": "a", "target": "b"}])}))
    config = load_config(None, parse_overrides(["--data.dataset", "some/corpus", "--data.dataset_config", "de-en"]))
    assert load_task(config).name == "seq2seq" and asked == [("some/corpus", "de-en")]
    config.data.dataset_split = "train_sft"
    with pytest.raises(DataError, match="data.dataset_split 'train_sft': data.dataset 'some/corpus' has splits train"):
        load_task(config)


def test_the_callers_metrics_and_lora_settings(tmp_path):
    from peft import LoraConfig

    from warmgen import WarmupTrainer
    from warmgen.trainer import use_peft_config

    def digits_right(predictions, references):
        return {"digits_right": sum(p == r for p, r in zip(predictions, references)) / len(references)}

    rows = [{"input": f"{w} {i}", "target": str(i)} for i, w in enumerate(["one", "two", "three", "four"] * 3)]
    args = WarmupConfig(output_dir=str(tmp_path / "run"), model={"name": "t5-tiny", "vocab_size": 300},
                        train={"max_steps": 2, "batch_size": 4, "eval_every": 1, "metric_for_best_model": "digits_right"},
                        warmup={"max_warmup_length": 2})
    trainer = WarmupTrainer(args=args, train_dataset=rows, eval_dataset=rows[:4], compute_metrics=digits_right)
    output = trainer.train()
    assert "eval_digits_right" in output.metrics and trainer.results["metric_for_best_model"] == "digits_right"
    assert "digits_right" in trainer.evaluate(rows[:4])
    with pytest.raises(ConfigError, match="compute_metrics must return a dict of metric names and numbers"):
        WarmupTrainer(args=args, train_dataset=rows, eval_dataset=rows[:4], compute_metrics=lambda p, r: 0.5).train(overwrite="delete")

    config = WarmupConfig()
    use_peft_config(config, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["v_proj", "q_proj"]))
    assert (config.model.lora_rank, config.model.lora_alpha, config.model.lora_dropout, config.model.lora_target_modules) == \
        (4, 8.0, 0.1, ["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match="peft_config: warmgen takes r, lora_alpha, lora_dropout and target_modules; use_dora"):
        use_peft_config(config, LoraConfig(r=4, use_dora=True))


def test_transformers_callbacks_see_logs_evaluations_and_saves_and_can_stop_training(tmp_path):
    from transformers import TrainerCallback

    from warmgen import WarmupTrainer

    class Watch(TrainerCallback):
        def __init__(self):
            self.logged, self.evaluated, self.saved = [], [], 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logged.append(logs["step"])

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.evaluated.append((state.global_step, sorted(metrics)[:1]))
            control.should_training_stop = state.global_step >= 2

        def on_save(self, args, state, control, **kwargs):
            self.saved += 1

    rows = [{"input": f"{w} {i}", "target": str(i)} for i, w in enumerate(["one", "two", "three", "four"] * 3)]
    args = WarmupConfig(output_dir=str(tmp_path / "run"), model={"name": "t5-tiny", "vocab_size": 300},
                        train={"max_steps": 6, "batch_size": 4, "eval_every": 1, "log_every": 1}, warmup={"max_warmup_length": 2})
    watch = Watch()
    trainer = WarmupTrainer(args=args, train_dataset=rows, eval_dataset=rows[:4], callbacks=[watch])
    output = trainer.train()
    assert output.global_step == 2 and watch.logged == [1, 2] and watch.saved == 2
    assert trainer.results["stopped_early"] == "a callback set control.should_training_stop"
    assert not trainer.results["stopped_by_time_budget"]
    assert watch.evaluated == [(1, ["eval_bleu"]), (2, ["eval_bleu"])]
