"""What a hostile or unlucky user feeds `warmgen generate` and the Python API: a warning or one error line, never
silence, never a traceback."""

import pytest
from test_reliability import ARGS
from test_run_folder import error_lines

from warmgen import WarmupConfig, WarmupTrainer, generate
from warmgen.checkpoint import load_checkpoint
from warmgen.cli import main
from warmgen.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-input") / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(folder)]) == 0
    return folder


def cli(capsys, *args):
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_long_input_is_cut_with_a_warning_or_refused(run, capsys):
    long = "abc" * 2000
    code, out, err = cli(capsys, "generate", str(run), "abc", long, "--json")
    assert code == 0 and len(out.splitlines()) == 2
    assert "warmgen: warning: generate: input 2 is longer than data.max_source_length (64 tokens) and was cut to it" in err
    code, out, err = cli(capsys, "generate", str(run), long, "--data.on_overlength", "error")
    assert code == 2 and "input 1 is longer than data.max_source_length (64 tokens): raise" in err and len(error_lines(err)) == 1


def test_empty_and_invalid_inputs_are_one_line_errors(run, tmp_path, capsys):
    code, _, err = cli(capsys, "generate", str(run), "abc", " ")
    assert code == 2 and "generate: input 2 is empty" in err
    code, _, err = cli(capsys, "generate", str(run), b"ab\xffc".decode("utf-8", "surrogateescape"))  # as Python reads argv
    assert code == 2 and "generate: input 1 is not valid UTF-8 text (character 3)" in err
    (tmp_path / "inputs.txt").write_bytes(b"abc\nab\xffc\n")
    code, _, err = cli(capsys, "generate", str(run), "--file", str(tmp_path / "inputs.txt"))
    assert code == 2 and f"{tmp_path / 'inputs.txt'}:2: not valid UTF-8" in err and len(error_lines(err)) == 1


def test_the_api_names_a_tokenizer_given_by_name(run):
    model, tokenizer, _, config = load_checkpoint(run / "checkpoints" / "best")
    with pytest.raises(ConfigError, match=r"generate: tokenizer must be a transformers tokenizer, got str: load it first"):
        generate(model, "t5-small", ["abc"], config)
    with pytest.raises(ConfigError, match=r"WarmupTrainer: tokenizer must be a transformers tokenizer, got str"):
        WarmupTrainer(model=model, tokenizer="t5-small", args=WarmupConfig())
    with pytest.raises(DataError, match="generate: input 1 is empty"):
        generate(model, tokenizer, [""], config)
    with pytest.warns(UserWarning, match="input 1 is longer than data.max_source_length"):
        assert len(generate(model, tokenizer, ["abc" * 2000], config)) == 1


def test_a_full_disk_while_logging_names_the_log(tmp_path, monkeypatch, capsys):
    import warmgen.runlog

    class FullDisk:
        name = str(tmp_path / "new" / "metrics.jsonl")

        def write(self, text):
            raise OSError(28, "No space left on device")

    real = warmgen.runlog.open_logs
    monkeypatch.setattr(warmgen.runlog, "open_logs", lambda *args: (FullDisk(), real(*args)[1]))
    code, _, err = cli(capsys, "train", *ARGS, "--output_dir", str(tmp_path / "new"))
    assert code == 2 and f"warmgen: error: {FullDisk.name}: No space left on device" in err
