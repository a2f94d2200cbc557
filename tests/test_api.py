"""The Python API (`WarmupTrainer`, `WarmupConfig`, `generate`) trains like the CLI, on rows, a
`datasets.Dataset` or a caller's model, resumes, and checks config fields as they are set."""

import json

import datasets
import pytest
import torch
from helpers.faults import failing_on_call

import warmgen.objectives
import warmgen.train
from warmgen import ConfigError, DataError, WarmupConfig, WarmupTrainer, generate
from warmgen.cli import main
from warmgen.models import build_preset

WORDS = ["cat", "dog", "bird", "fish", "horse", "mouse", "sheep", "goat", "duck", "frog"]
ROWS = [{"input": w, "target": " ".join(w.upper())} for w in WORDS * 4]
SETTINGS = {"train.max_steps": 4, "train.batch_size": 8, "train.eval_every": 2, "train.log_every": 1, "train.samples_every": 0,
            "warmup.max_warmup_length": 3, "model.name": "t5-tiny", "model.vocab_size": 300, "data.task": "seq2seq",
            "data.metrics": ["chrf"]}


def args(output_dir, **more) -> WarmupConfig:
    config = WarmupConfig(output_dir=str(output_dir))
    for key, value in {**SETTINGS, **more}.items():
        section, name = key.split(".")
        setattr(getattr(config, section), name, value)
    return config


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_rows_a_dataset_and_the_cli_on_a_file_train_the_same(tmp_path):
    trainer = WarmupTrainer(args=args(tmp_path / "rows"), train_dataset=ROWS, eval_dataset=ROWS[:4])
    output = trainer.train()  # transformers' TrainOutput; the best model is trainer.model
    model = trainer.model
    assert isinstance(model, torch.nn.Module) and trainer.results["steps"] == 4 and output.global_step == 4
    assert output.training_loss > 0 and output.metrics["eval_chrf"] == trainer.results["splits"]["dev"]["chrf"]
    WarmupTrainer(args=args(tmp_path / "dataset"), train_dataset=datasets.Dataset.from_list(ROWS),
                  eval_dataset=datasets.Dataset.from_list(ROWS[:4])).train()
    for name, rows in (("train", ROWS), ("dev", ROWS[:4])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [item for key, value in SETTINGS.items() for item in (f"--{key}", json.dumps(value))]
    main(["train", *overrides, "--data.train_file", str(tmp_path / "train.jsonl"), "--data.dev_file", str(tmp_path / "dev.jsonl"),
          "--output_dir", str(tmp_path / "cli")])
    assert losses(tmp_path / "rows") == losses(tmp_path / "dataset") == losses(tmp_path / "cli")
    assert [s for s, _ in losses(tmp_path / "rows")] == [1, 2, 3, 4]

    scores = trainer.evaluate(ROWS[:6])
    assert scores["num_examples"] == 6 and "chrf" in scores
    pairs = generate(model, trainer.tokenizer, ["cat", "dog", "emu"], trainer.args)
    assert len(pairs) == 3 and all(isinstance(w, str) and isinstance(o, str) for w, o in pairs)


def test_a_model_the_caller_built_is_trained_and_returned(tmp_path):
    torch.manual_seed(0)
    model, tokenizer = build_preset("t5-tiny", [r["input"] for r in ROWS], [r["target"] for r in ROWS], vocab_size=300)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = WarmupTrainer(model=model, tokenizer=tokenizer, args=args(tmp_path / "mine"),
                            train_dataset=ROWS)
    trainer.train()
    trained = trainer.model
    assert trained.config.d_model == model.config.d_model
    changed = [k for k, v in trained.state_dict().items() if k in before and v.shape == before[k].shape and not torch.equal(v, before[k])]
    assert changed  # it learnt from the rows
    assert trainer.tokenizer.convert_tokens_to_ids("<sep>") is not None


def test_zero_epochs_evaluates_the_starting_model_as_it_is(tmp_path):
    """`train.epochs: 0`: the zero-shot row of a comparison. No step is taken, yet the run has its
    checkpoint, its dev row at step 0 and its test scores, all of the model it was given."""
    torch.manual_seed(0)
    model, tokenizer = build_preset("t5-tiny", [r["input"] for r in ROWS], [r["target"] for r in ROWS], vocab_size=300)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = args(tmp_path / "zero", **{"train.epochs": 0, "train.max_steps": 0})
    config.method = "sft"
    trainer = WarmupTrainer(model=model, tokenizer=tokenizer, args=config, train_dataset=ROWS, eval_dataset=ROWS[:4])
    trainer.train()
    evaluated = trainer.model
    assert trainer.results["steps"] == 0 and trainer.results["seconds_per_epoch"] == 0
    assert losses(tmp_path / "zero") == []
    rows = [json.loads(line) for line in (tmp_path / "zero" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "dev/chrf" in r] == [0]
    assert all(torch.equal(v, before[k]) for k, v in evaluated.state_dict().items() if k in before and v.shape == before[k].shape)
    assert trainer.evaluate(ROWS[:4])["chrf"] == trainer.results["splits"]["dev"]["chrf"]


def test_the_final_evaluation_loads_the_best_checkpoint_after_the_training_model_is_gone(tmp_path, monkeypatch):
    """A run's peak memory is one model plus its training state, never two models: the training model and its
    optimizer are released before the best checkpoint is loaded for the final evaluation."""
    import gc
    import weakref

    trained, alive_at_load = [], []
    prepare, load = warmgen.train.prepare, warmgen.train.load_checkpoint

    def remembering_prepare(*args, **kwargs):
        run = prepare(*args, **kwargs)
        trained.extend([weakref.ref(run.model), weakref.ref(run.optimizer)])
        return run

    def checking_load(folder, trusting=None):
        gc.collect()
        alive_at_load.append([ref() is not None for ref in trained])
        return load(folder, trusting)

    monkeypatch.setattr(warmgen.train, "prepare", remembering_prepare)
    monkeypatch.setattr(warmgen.train, "load_checkpoint", checking_load)
    WarmupTrainer(args=args(tmp_path / "run"), train_dataset=ROWS, eval_dataset=ROWS[:4]).train()
    assert alive_at_load == [[False, False]]


def test_training_resumes_through_the_api(tmp_path, monkeypatch):
    WarmupTrainer(args=args(tmp_path / "full"), train_dataset=ROWS, eval_dataset=ROWS[:4]).train()
    crashed = WarmupTrainer(args=args(tmp_path / "crashed"), train_dataset=ROWS, eval_dataset=ROWS[:4])
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))  # after the step-2 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.train()
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    crashed.train(resume_from_checkpoint=True)
    assert losses(tmp_path / "crashed") == losses(tmp_path / "full")
    with pytest.raises(ConfigError, match="holds a finished run"):
        WarmupTrainer(args=args(tmp_path / "full"), train_dataset=ROWS).train()


def test_config_fields_are_checked_as_they_are_set():
    config = WarmupConfig(method="sft", model={"name": "t5-mini"}, train={"epochs": 2, "learning_rate": "2e-3"})
    assert config.train.epochs == 2.0 and config.train.learning_rate == 0.002
    with pytest.raises(ConfigError, match=r"unknown config key 'warmup.num_warmup': did you mean 'warmup.num_warmups'\?"):
        config.warmup.num_warmup = 8
    with pytest.raises(ConfigError, match="train.batch_size: expected int, got '8'"):
        config.train.batch_size = "8"
    with pytest.raises(ConfigError, match="method: 'rl' is not one of"):
        config.method = "rl"
    with pytest.raises(ConfigError, match="unknown config key 'model.nmae': did you mean 'model.name'"):
        WarmupConfig(model={"nmae": "x"})
    with pytest.raises(ConfigError, match="warmup.min_warmup_length must be between 0 and warmup.max_warmup_length"):
        WarmupConfig(warmup={"min_warmup_length": 9})


def test_bad_rows_are_named_by_dataset_and_index(tmp_path):
    rows = ROWS[:5] + [{"input": "x"}]
    with pytest.raises(DataError, match=r"train_dataset\[5\]: field 'target' is missing"):
        WarmupTrainer(args=args(tmp_path / "bad"), train_dataset=rows).train()
    with pytest.raises(DataError, match=r"eval_dataset\[0\]: expected a row of fields \(a dict\), got str"):
        WarmupTrainer(args=args(tmp_path / "bad2"), train_dataset=ROWS, eval_dataset=["cat"]).train()
    with pytest.raises(ConfigError, match="pass the model's tokenizer"):
        WarmupTrainer(model=torch.nn.Linear(2, 2), args=args(tmp_path / "x"))


def test_the_trainer_leaves_the_callers_args_as_they_were(tmp_path):
    args = WarmupConfig(output_dir=str(tmp_path / "run"), data={"task": "seq2seq"})
    trainer = WarmupTrainer(model="t5-tiny", args=args, train_dataset=str(tmp_path / "train.jsonl"))
    assert trainer.args.model.name == "t5-tiny" and trainer.args.data.train_file == str(tmp_path / "train.jsonl")
    assert args.model.name == WarmupConfig().model.name and args.data.train_file is None
