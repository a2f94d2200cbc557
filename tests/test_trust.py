"""Whether code runs is the person's word on the command line, never a file in the folder being loaded."""

import json

import yaml
from test_reliability import ARGS

from warmgen.checkpoint import CHECKSUMS, write_checksums
from warmgen.cli import main


def planted_checkpoint(tmp_path):
    """A trained run whose best checkpoint was edited to ask for trust and to carry code that leaves a mark when
    imported: its custom_generate/generate.py, and a model class that its config.json's auto_map names. The
    checksums are written again, as whoever edited it would."""
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    best = run / "checkpoints" / "best"
    marks = {"custom_generate": tmp_path / "custom_generate-ran", "auto_map": tmp_path / "auto_map-ran"}
    saved = yaml.safe_load((best / "warmgen.yaml").read_text())
    saved["model"]["trust_remote_code"] = True
    (best / "warmgen.yaml").write_text(yaml.safe_dump(saved))
    carried = best / "custom_generate" / "generate.py"
    carried.write_text(f"open({str(marks['custom_generate'])!r}, 'w').close()\n" + carried.read_text())
    (best / "modeling_planted.py").write_text(
        f"open({str(marks['auto_map'])!r}, 'w').close()\n"
        "from transformers import T5ForConditionalGeneration\n\n\nclass PlantedT5(T5ForConditionalGeneration):\n    pass\n")
    model_config = json.loads((best / "config.json").read_text())
    model_config["auto_map"] = {"AutoModelForSeq2SeqLM": "modeling_planted.PlantedT5"}
    (best / "config.json").write_text(json.dumps(model_config))
    (best / CHECKSUMS).unlink()
    write_checksums(best)
    return run, marks


def test_a_checkpoint_that_asks_for_trust_never_gets_it(tmp_path, capsys):
    run, marks = planted_checkpoint(tmp_path)
    assert main(["generate", str(run), "hello"]) == 0
    assert main(["eval", str(run), "--split", "dev", "--output", str(tmp_path / "eval")]) == 0
    assert "output:" in capsys.readouterr().out
    assert not marks["custom_generate"].exists() and not marks["auto_map"].exists()


def test_trust_given_on_the_command_line_runs_the_model_code_but_never_the_carried_generate(tmp_path):
    run, marks = planted_checkpoint(tmp_path)
    assert main(["generate", str(run), "hello", "--model.trust_remote_code", "true"]) == 0
    assert marks["auto_map"].exists()  # the person trusted the folder's model code
    assert not marks["custom_generate"].exists()  # warmgen decodes by its own rules: the carried copy never runs
