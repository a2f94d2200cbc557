"""The run folder: nothing lost without being asked, nothing executed, OS failures as one-line errors."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_reliability import ARGS, config, losses, nan_on

import warmgen.train
from warmgen.cli import main
from warmgen.errors import ConfigError
from warmgen.rundir import hold_folder
from warmgen.train import TrainingError


def run_cli(capsys, *args):
    """`warmgen ARGS`: (exit code, stderr). An exception that escaped main would fail the test, as a traceback would."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def test_a_finished_run_is_never_replaced_unasked(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    assert main(["train", *ARGS, "--train.max_steps", "3", "--output_dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a finished run" in err and "--resume" in err and "--overwrite move" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before

    # --overwrite move: the earlier run, whole, beside the new one.
    assert main(["train", *ARGS, "--train.max_steps", "3", "--output_dir", str(run), "--overwrite", "move"]) == 0
    aside = tmp_path / "run.previous-1"
    assert {aside / p.relative_to(run): b for p, b in before.items()} == {p: p.read_bytes() for p in aside.rglob("*") if p.is_file()}
    assert [s for s, _ in losses(run)] == [1, 2, 3] and json.loads((run / "results.json").read_text())["steps"] == 3

    # --overwrite delete: gone, and nothing of it left beside the new run.
    assert main(["train", *ARGS, "--train.max_steps", "1", "--output_dir", str(run), "--overwrite", "delete"]) == 0
    assert [s for s, _ in losses(run)] == [1] and not (tmp_path / "run.previous-2").exists()


def test_a_started_run_is_refused_too_and_an_empty_folder_is_not(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    warmgen.train.train(config(tmp_path, "run", "--train.max_steps", "1"))  # a folder with no run in it is fine
    assert (run / "notes.txt").read_text() == "mine"
    (run / "results.json").unlink()
    with pytest.raises(ConfigError, match="holds a started run"):
        warmgen.train.train(config(tmp_path, "run", "--train.max_steps", "1"))


def test_resume_refuses_a_config_that_changes_the_computation(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", *ARGS, "--train.max_steps", "4", "--seed", "3", "--train.learning_rate", "0.5",
                 "--output_dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "seed: 0 there, 3 now" in err and "train.max_steps: 2 there, 4 now" in err
    assert "train.learning_rate: 0.001 there, 0.5 now" in err
    saved = (run / "checkpoints" / "last" / "warmgen.yaml").read_text()
    assert "max_steps: 2" in saved  # the checkpoint still says what its steps used
    # What only changes where logs go or how fast decoding batches is not a different computation.
    assert main(["train", *ARGS, "--train.max_steps", "2", "--train.log_every", "5", "--decode.batch_size", "3",
                 "--output_dir", str(run), "--resume"]) == 0


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


PWNED = None


def test_a_crafted_trainer_state_is_refused_without_running(tmp_path, capsys):
    global PWNED
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    PWNED = tmp_path / "pwned"
    state = run / "checkpoints" / "last" / "trainer_state.pt"
    torch.save({"step": 1, "rng": Payload()}, state)
    assert not PWNED.exists()
    with open(state, "rb") as f:  # it is a working payload: unpickling it the unsafe way runs the command
        torch.load(f, weights_only=False)
    assert PWNED.exists()
    PWNED.unlink()
    capsys.readouterr()
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{state}: damaged or changed since it was saved" in err and len(error_lines(err)) == 1
    (state.parent / "checksums.json").unlink()  # as a checkpoint of an older warmgen (or one whose sums were rewritten)
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{state}: refused to load" in err and "could run code" in err and len(error_lines(err)) == 1
    assert not PWNED.exists()


def test_damaged_files_are_named(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    last = run / "checkpoints" / "last"
    state = last / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    (last / "checksums.json").unlink()  # what the reader itself says, as for a checkpoint of an older warmgen
    code, err = run_cli(capsys, "train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run), "--resume")
    assert code == 2 and f"{state}: cannot be read, the file is damaged or incomplete" in err and "Traceback" not in err
    weights = run / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    (weights.parent / "checksums.json").unlink()
    code, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and f"{weights.parent}: its safetensors weights cannot be read" in err and "Traceback" not in err


def test_flipped_bytes_in_the_weights_are_reported_by_eval_generate_and_resume(tmp_path, capsys):
    """safetensors checks its header, not the tensor bytes: without the checkpoint's SHA-256 sums, flipped bits in
    the weights load and score silently."""
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "3", "--train.stop_after_step", "2", "--output_dir", str(run)]) == 0
    for name in ("best", "last"):
        weights = run / "checkpoints" / name / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF  # in the last tensor's data
        weights.write_bytes(bytes(data))
    weights = run / "checkpoints" / "best" / "model.safetensors"
    for command in (["eval", str(run)], ["generate", str(run), "hello"]):
        code, err = run_cli(capsys, *command)
        assert code == 2 and f"{weights}: damaged or changed since it was saved" in err and len(error_lines(err)) == 1
    resume = ["train", *ARGS, "--train.max_steps", "3", "--output_dir", str(run), "--resume"]
    code, err = run_cli(capsys, *resume)
    assert code == 2 and f"{run / 'checkpoints' / 'last' / 'model.safetensors'}: damaged or changed" in err
    (run / "checkpoints" / "last" / "tokenizer.json").unlink()
    code, err = run_cli(capsys, *resume)
    assert code == 2 and "tokenizer.json: missing from the checkpoint (checksums.json lists it)" in err


def error_lines(err: str) -> list[str]:
    """The error lines of a CLI's stderr (the progress bar writes there too)."""
    return [line for line in err.splitlines() if "warmgen: error:" in line or "Traceback" in line]


def test_a_full_disk_is_one_line_and_leaves_the_last_checkpoint_and_no_temporary_folder(tmp_path, monkeypatch, capsys):
    warmgen.train.train(config(tmp_path, "whole", "--train.eval_every", "1"))
    real_save = torch.save

    def full_disk_after_first(*args, **kwargs):  # torch's words when a write runs out of space
        if list((tmp_path / "full" / "checkpoints").glob("last/trainer_state.pt")):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 512")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_after_first)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    capsys.readouterr()
    assert main(["train", *ARGS, "--train.eval_every", "1", "--output_dir", str(tmp_path / "full")]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "cannot write the checkpoint" in errors[0] and "No space left on device (0 MiB free" in errors[0]
    assert not list((tmp_path / "full" / "checkpoints").glob("*.tmp"))
    state = torch.load(tmp_path / "full" / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 1
    monkeypatch.undo()  # space freed: the run continues as if nothing happened
    warmgen.train.train(config(tmp_path, "full", "--train.eval_every", "1"), resume=True)
    assert losses(tmp_path / "full") == losses(tmp_path / "whole")


def test_os_errors_are_one_line(tmp_path, monkeypatch, capsys):
    def denied(self, *args, **kwargs):  # as root here, so the operating system's refusal is simulated
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert main(["train", *ARGS, "--output_dir", str(tmp_path / "locked")]) == 2
    assert capsys.readouterr().err == f"warmgen: error: {tmp_path / 'locked'}: Permission denied\n"
    monkeypatch.undo()
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    code, err = run_cli(capsys, "train", *ARGS, "--output_dir", str(target))
    assert code == 2 and err.startswith(f"warmgen: error: {target}: File exists") and "Traceback" not in err
    code, err = run_cli(capsys, "train", *ARGS, "--output_dir", str(target / "run"))
    assert code == 2 and "Not a directory" in err and len(error_lines(err)) == 1


def test_nan_abort_before_any_checkpoint_does_not_name_one(tmp_path, monkeypatch):
    nan_on(set(range(1, 100)), monkeypatch)
    with pytest.raises(TrainingError, match="No checkpoint was saved yet") as err:
        warmgen.train.train(config(tmp_path, "nan", "--train.max_bad_steps", "2"))
    assert "checkpoints/last" not in str(err.value)


def test_eval_refuses_a_folder_that_a_training_run_holds(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "1", "--output_dir", str(run)]) == 0
    written = (run / "eval" / "dev" / "results.json").read_bytes()
    holder = hold_folder(run, "warmgen train")
    try:
        capsys.readouterr()
        assert main(["eval", str(run), "--split", "dev", "--decode.num_beams", "2"]) == 2
        assert "is in use by warmgen train" in capsys.readouterr().err
        assert (run / "eval" / "dev" / "results.json").read_bytes() == written
        assert main(["eval", str(run), "--split", "dev", "--output", str(tmp_path / "elsewhere")]) == 0
    finally:
        holder.close()


def test_max_grad_norm_zero_means_no_clipping(tmp_path):
    warmgen.train.train(config(tmp_path, "zero", "--train.max_steps", "3", "--train.max_grad_norm", "0"))
    warmgen.train.train(config(tmp_path, "huge", "--train.max_steps", "3", "--train.max_grad_norm", "1.0e9"))
    warmgen.train.train(config(tmp_path, "tight", "--train.max_steps", "3", "--train.max_grad_norm", "1.0e-3"))
    assert losses(tmp_path / "zero") == losses(tmp_path / "huge") != losses(tmp_path / "tight")


def test_pickled_weights_and_remote_code_in_a_model_folder_are_refused_without_running(tmp_path, capsys):
    global PWNED
    from warmgen.models import build_preset

    model, tokenizer = build_preset("t5-tiny", ["a b c"], vocab_size=300)
    PWNED = tmp_path / "pwned"
    pickled = tmp_path / "pickled"
    model.save_pretrained(pickled)
    tokenizer.save_pretrained(pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"shared.weight": Payload()}, pickled / "pytorch_model.bin")
    capsys.readouterr()
    assert main(["train", *ARGS, "--model.name", str(pickled), "--output_dir", str(tmp_path / "a")]) == 2
    assert "could not be loaded as a local folder" in capsys.readouterr().err

    remote = tmp_path / "remote"
    model.save_pretrained(remote)
    tokenizer.save_pretrained(remote)
    config_json = json.loads((remote / "config.json").read_text())
    config_json.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})  # only its code knows it
    (remote / "config.json").write_text(json.dumps(config_json))
    (remote / "configuration_evil.py").write_text(f"open({str(PWNED)!r}, 'w').close()\n")
    assert main(["train", *ARGS, "--model.name", str(remote), "--output_dir", str(tmp_path / "b")]) == 2
    assert "trust_remote_code" in capsys.readouterr().err
    assert not PWNED.exists()


def test_resume_after_a_half_deleted_old_copy_and_a_torn_log_line(tmp_path, capsys):
    """What kill -9 leaves while `last.old` is being deleted (the new `last` in place) and in the middle of a log line."""
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "4", "--train.stop_after_step", "2", "--output_dir", str(run)]) == 0
    last = run / "checkpoints" / "last"
    shutil.copytree(last, last.with_name("last.old"))
    (last.with_name("last.old") / "model.safetensors").unlink()
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"step": 3, "loss": 1.2')
    capsys.readouterr()
    assert main(["train", *ARGS, "--train.max_steps", "4", "--output_dir", str(run), "--resume"]) == 0
    assert "metrics.jsonl: left out its last line, cut short when the run stopped" in capsys.readouterr().out
    assert [step for step, _ in losses(run)] == [1, 2, 3, 4] and not last.with_name("last.old").exists()


def test_links_inside_the_checkpoints_folder_are_refused_and_delete_checks_before_deleting(tmp_path, capsys):
    run, outside = tmp_path / "run", tmp_path / "outside"
    assert main(["train", *ARGS, "--train.max_steps", "4", "--train.stop_after_step", "2", "--output_dir", str(run)]) == 0
    outside.mkdir()
    (outside / "config.json").write_text("mine")
    (run / "checkpoints" / "last.tmp").symlink_to(outside)
    code, err = run_cli(capsys, "train", *ARGS, "--train.max_steps", "4", "--output_dir", str(run), "--resume")
    assert code == 2 and f"{run / 'checkpoints' / 'last.tmp'} is a symbolic link" in err
    assert (outside / "config.json").read_text() == "mine"

    other = tmp_path / "other"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(other)]) == 0
    os.replace(other / "checkpoints", outside / "checkpoints")
    (other / "checkpoints").symlink_to(outside / "checkpoints")
    before = sorted(p.name for p in other.iterdir())
    code, err = run_cli(capsys, "train", *ARGS, "--train.max_steps", "2", "--output_dir", str(other), "--overwrite", "delete")
    assert code == 2 and f"{other / 'checkpoints'} is a symbolic link" in err and "nothing was deleted" in err
    assert sorted(p.name for p in other.iterdir()) == before and (outside / "checkpoints" / "best").is_dir()


def test_a_users_own_config_in_the_output_folder_is_never_moved_or_written_over(tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  name: t5-tiny\n")
    for overwrite in ([], ["--overwrite", "move"], ["--overwrite", "delete"]):
        code, err = run_cli(capsys, "train", *ARGS, "--output_dir", str(run), *overwrite)
        assert code == 2 and "is not a run's config" in err and "would write over it" in err
    assert (run / "config.yaml").read_text() == "model:\n  name: t5-tiny\n" and not run.with_name("mine.previous-1").exists()
