import pytest

from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "method: sft\nwarmup:\n  num_warmups: 6\n  temperature: 2\ntrain:\n  epochs: 3\n")
    config = load_config(path, parse_overrides(["--warmup.num_warmups", "8", "--epochs=5", "--method", "warmup"]))
    assert config.method == "warmup"
    assert config.warmup.num_warmups == 8  # override beats YAML
    assert config.warmup.temperature == 2.0 and isinstance(config.warmup.temperature, float)  # int accepted for float
    assert config.train.epochs == 5.0  # a unique bare name finds its section
    assert config.train.batch_size == 32  # default kept
    assert config.config_dir == str(tmp_path.resolve())


def test_exponent_without_dot_is_a_float(tmp_path):
    config = load_config(write(tmp_path, "train:\n  learning_rate: 2e-3\n"), parse_overrides(["--temperature", "5e-1"]))
    assert config.train.learning_rate == 0.002 and config.warmup.temperature == 0.5
    with pytest.raises(ConfigError, match="train.learning_rate: expected a number, got 'fast'"):
        load_config(None, parse_overrides(["--learning_rate", "fast"]))


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "warmup:\n  num_warmup: 4\n"))
    message = str(err.value)
    assert "run.yaml" in message and "warmup.num_warmup" in message and "warmup.num_warmups" in message


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="warmup.num_warmups: expected int"):
        load_config(None, parse_overrides(["--warmup.num_warmups", "four"]))
    with pytest.raises(ConfigError, match="warmup.objective: 'best' is not one of"):
        load_config(None, parse_overrides(["--warmup.objective", "best"]))
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config(None, parse_overrides(["--no_warmup_candidate", "yes please"]))


def test_an_unquoted_no_is_the_option_no(tmp_path):
    """YAML reads `no` as false; where a field's options spell a false as `no`, that option is meant (as in accelerate's
    configs, which quote it)."""
    config = load_config(write(tmp_path, "train:\n  mixed_precision: no\n"))
    assert config.train.mixed_precision == "no"
    assert load_config(None, parse_overrides(["--train.mixed_precision", "no"])).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"model.tokenizer: False is not one of 'auto', 'bpe', 'symbols', 'char' \(YAML reads an unquoted yes, no"):
        load_config(None, parse_overrides(["--model.tokenizer", "off"]))


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="rloo needs"):
        load_config(None, parse_overrides(["--objective", "rloo", "--num_warmups", "1"]))
    with pytest.raises(ConfigError, match="min_warmup_length"):
        load_config(None, parse_overrides(["--min_warmup_length", "9", "--max_warmup_length", "4"]))
    with pytest.raises(ConfigError, match="train.max_train_seconds must be >= 0"):
        load_config(None, parse_overrides(["--max_train_seconds", "-5"]))
    for first_draws in ("1", "4"):  # one draw cannot disagree; k draws leave none to add
        with pytest.raises(ConfigError, match="warmup.first_draws must be 0"):
            load_config(None, parse_overrides(["--first_draws", first_draws, "--num_warmups", "4"]))


def test_ambiguous_bare_key():
    with pytest.raises(ConfigError, match="ambiguous: use one of train.batch_size, decode.batch_size|ambiguous"):
        load_config(None, parse_overrides(["--batch_size", "4"]))


def test_saved_config_round_trips(tmp_path):
    config = load_config(None, parse_overrides(["--num_warmups", "3", "--data.metrics", "[wer, per]"]))
    config.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == config.to_dict()


def test_saved_config_keeps_the_folder_relative_paths_start_from(tmp_path):
    (tmp_path / "exp").mkdir()
    config = load_config(write(tmp_path / "exp", "data:\n  task: seq2seq\n  train_file: train.jsonl\n"))
    config.save(tmp_path / "saved.yaml")  # e.g. a checkpoint's warmgen.yaml, elsewhere
    assert load_config(tmp_path / "saved.yaml").config_dir == str((tmp_path / "exp").resolve())


@pytest.mark.parametrize("override, message", [
    (["--seed", "-1"], "seed must be >= 0"),
    (["--log_every", "0"], "train.log_every must be at least 1"),
    (["--decode.batch_size", "0"], "decode.batch_size must be at least 1"),
    (["--learning_rate", ".inf"], "train.learning_rate: expected a finite number"),
    (["--temperature", "nan"], "warmup.temperature: expected a finite number"),
    (["--max_grad_norm", "-1"], "train.max_grad_norm must be >= 0 \\(0 = no clipping\\)"),
    (["--max_train_examples", "-5"], "data.max_train_examples, max_dev_examples and max_test_examples must be >= 0"),
    (["--max_dev_examples", "-1"], "must be >= 0"),
    (["--output_dir", ""], "output_dir is empty"),
    (["--eval_every", "-2"], "train.eval_every must be >= 0"),
    (["--max_target_length", "0"], "must be at least 1"),
])
def test_every_range_is_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, parse_overrides(override))


def test_a_key_given_twice_in_yaml_is_refused(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 2\nmethod: sft\ntrain:\n  learning_rate: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"run.yaml:4: not valid YAML: key 'train' appears twice in one mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="key 'epochs' appears twice"):
        load_config(write(tmp_path, "train:\n  epochs: 2\n  epochs: 3\n"))


def test_yaml_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffmethod: sft\n".encode())
    assert load_config(path).method == "sft"


def test_two_sft_configs_are_not_told_apart_by_the_warmup_section_sft_never_reads():
    from warmgen.config_files import differences

    def config(method, steps, lr=1e-3):
        return load_config(None, [("method", method), ("warmup.sft_warm_start_steps", steps), ("train.learning_rate", lr)]).to_dict()

    assert differences(config("sft", 0), config("sft", 5)) == []
    assert differences(config("sft", 0), config("sft", 5, lr=2e-3)) == ["train.learning_rate: 0.001 there, 0.002 now"]
    assert differences(config("warmup", 0), config("warmup", 5)) == ["warmup.sft_warm_start_steps: 0 there, 5 now"]
    assert differences(config("sft", 0), config("warmup", 0)) == ["method: 'sft' there, 'warmup' now"]


def test_a_yaml_alias_bomb_is_refused_in_a_moment(tmp_path, capsys):
    """Nine lines whose aliases stand for 10^9 values: reading them is quick, formatting one in an error took minutes."""
    import time

    from warmgen.cli import main

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\ndata:\n  metrics: *a8\n")
    started = time.time()
    assert main(["train", "--config", str(tmp_path / "bomb.yaml")]) == 2
    assert time.time() - started < 5
    assert "stands for more than 100,000 values (YAML aliases" in capsys.readouterr().err
    nested = ["&b0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ConfigError, match="command line: --data.metrics: stands for more than 100,000 values"):
        parse_overrides(["--data.metrics", f"[{', '.join(nested)}]"])


def test_errors_show_a_huge_value_shortened():
    from warmgen.typecheck import check_type

    with pytest.raises(ConfigError) as err:
        check_type(list(range(10**6)), int, "train.epochs")
    assert len(str(err.value)) < 200
