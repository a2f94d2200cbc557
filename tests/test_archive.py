"""`warmgen compare --export / --import`: finished runs kept without their folder, summarised as if never moved."""

import gzip
import json
import shutil

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_compare import TINY

from warmgen.cli import main
from warmgen.compare.archive import read_archive
from warmgen.errors import DataError
from warmgen.provenance import arithmetic_fingerprint
from warmgen.rundir import step_checkpoint

# A shared SFT warm start and a variant given the warmup run's time: what an import checks against depends on both.
SPEC = ("seeds: [0]\nbootstrap: 50\n" + f"overrides: {json.dumps(dict(zip([a[2:] for a in TINY[::2]], map(yaml.safe_load, TINY[1::2]))))}\n"
        "warm_start_from: sft\nsame_time_as: {sft+same_time: warmup}\nvariants:\n"
        "  sft: {method: sft}\n  warmup: {method: warmup, warmup.num_warmups: 2, warmup.sft_warm_start_steps: 1}\n"
        "  sft+same_time: {method: sft, train.epochs: 8}\n")
SUMMARISED = ("table", "versus_baseline", "contrasts", "warmup_analysis", "examples", "trained_at_commits", "trained_with_versions")


def compare(spec, out, *args):
    return main(["compare", str(spec), "--output_dir", str(out), *args])


def rewrite(archive, path, change):
    with gzip.open(archive, "rt") as f:
        content = json.load(f)
    change(content)
    with gzip.open(path, "wt") as f:
        json.dump(content, f)
    return path


def test_exported_runs_imported_elsewhere_give_the_same_summary(tmp_path, capsys, monkeypatch):
    from benchmarks import recording, suite

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    trained, moved = tmp_path / "trained", tmp_path / "moved"
    assert compare(spec, trained) == 0
    before = json.loads((trained / "summary.json").read_text())
    whole, kept = tmp_path / "whole.json.gz", tmp_path / "kept" / "runs.json.gz"
    assert compare(spec, trained, "--export", str(whole)) == 0
    assert "[compare] wrote " in capsys.readouterr().out
    assert compare(spec, trained, "--export", str(whole)) == 2  # never written over
    assert "the file exists" in capsys.readouterr().err
    # The benchmark suite keeps the runs of every record it writes beside it, with the record's portable paths.
    monkeypatch.setattr(recording, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(suite, "TASKS", {"tiny": str(spec)})
    monkeypatch.setattr("sys.argv", ["suite", "--tasks", "tiny", "--partial", "--out", str(tmp_path)])
    monkeypatch.setattr(suite, "SHARED_FOLDER", {"tiny": "trained"})
    suite.main()
    record = next((tmp_path / "results" / "suite").glob("tiny-partial-*.json"))
    with gzip.open(record.with_suffix(".runs.json.gz"), "rt") as f, gzip.open(whole, "rt") as g:
        assert json.load(f) == recording.portable(json.load(g))

    # No weights and no dataset text: predictions keep their id, warmup and output.
    with gzip.open(whole, "rt") as f:
        archived = json.load(f)["runs"]
    assert set(archived) == {"sft", "warmup", "sft+same_time"} and set(archived["sft"]) == {"0"}
    assert all(set(row) == {"id", "warmup", "prediction"} for row in archived["warmup"]["0"]["test_predictions"])
    # Two archives: the run given the warmup run's time apart from its reference.
    kept.parent.mkdir()
    same_time = rewrite(whole, tmp_path / "same_time.json.gz", lambda c: [c["runs"].pop(v) for v in ("sft", "warmup")])
    rewrite(whole, kept, lambda c: c["runs"].pop("sft+same_time"))

    # Imported on "another machine" (the trained folder gone), the runs are finished there and summarise the same.
    assert compare(spec, trained, "--status") == 0
    assert "no weights here" not in capsys.readouterr().out
    trained.rename(tmp_path / "gone")
    assert compare(spec, moved, "--import", str(same_time), str(kept)) == 0
    assert capsys.readouterr().out.count("imported from") == 3
    assert compare(spec, moved, "--status") == 0
    assert capsys.readouterr().out.count("s of training (no weights here: imported, or nothing trained)") == 3
    assert compare(spec, moved) == 0  # nothing left to train: only the summary
    assert capsys.readouterr().out.count("done, skipped") == 3
    after = json.loads((moved / "summary.json").read_text())
    assert {key: after[key] for key in SUMMARISED} == {key: before[key] for key in SUMMARISED}
    # The summary names the import that brought the runs in.
    assert before["imports"] == [] and [(i["archives"], len(i["runs"])) for i in after["imports"]] == [(["runs.json.gz", "same_time.json.gz"], 3)]
    for name in ("results.json", "config.yaml", "metrics.jsonl", "eval/test/predictions.jsonl", "eval/test/results.json"):
        assert (moved / "warmup" / "seed0" / name).read_bytes() == (tmp_path / "gone" / "warmup" / "seed0" / name).read_bytes()
    assert compare(spec, moved, "--import", str(whole)) == 0
    assert capsys.readouterr().out.count(f"already finished here, kept (not the copy in {whole})") == 3

    # Runs computed on a machine that computes otherwise, imported where the others are left to train: said at once.
    def computed_elsewhere(content):
        for variant in ("warmup", "sft+same_time"):
            content["runs"].pop(variant)
        sft = content["runs"]["sft"]["0"]
        sft["metrics"] = sft["metrics"].replace(arithmetic_fingerprint(), "feedfacefeedface")

    foreign = rewrite(whole, tmp_path / "foreign.json.gz", computed_elsewhere)
    assert compare(spec, tmp_path / "foreign", "--import", str(foreign)) == 0
    assert "training the runs left here would be refused: " in capsys.readouterr().out
    assert compare(spec, tmp_path / "foreign") == 2
    assert "sft seed 0 was computed where the arithmetic fingerprint is feedfacefeedface" in capsys.readouterr().err
    # Archives that hold the same runs: the first named gives them, a later one only what the first lacks.
    assert compare(spec, tmp_path / "gathered", "--import", str(kept), str(whole)) == 0
    printed = capsys.readouterr().out
    assert f"sft seed 0: imported from {kept}" in printed and f"sft+same_time seed 0: imported from {whole}" in printed
    assert printed.count(f"{kept} gives it, kept (not the copy in {whole})") == 2
    # A warmup run to train again here starts from a checkpoint the imported SFT run came without: compare trains SFT's
    # first step again beside it (on the whole run's schedule), to the same weights, and the warmup run from there to
    # the same predictions. The imported SFT run stays as it was.
    for variant in ("warmup", "sft+same_time"):
        shutil.rmtree(moved / variant / "seed0")
    sft_files = {path: path.read_bytes() for path in (moved / "sft" / "seed0").rglob("*") if path.is_file()}
    assert compare(spec, moved, "--status") == 0
    waiting = "sft seed 0, its first 1 steps again for the warm starts (its checkpoints were not kept or not imported): pending"
    assert waiting in capsys.readouterr().out
    assert compare(spec, moved) == 0
    assert "sft seed 0, its first 1 steps again for the warm starts: training" in capsys.readouterr().out
    rebuilt = moved / "sft" / "seed0-warm-start"
    assert (step_checkpoint(rebuilt, 1) / "model.safetensors").read_bytes() == \
           (step_checkpoint(tmp_path / "gone" / "sft" / "seed0", 1) / "model.safetensors").read_bytes()
    assert not (rebuilt / "results.json").exists()
    header = json.loads((moved / "warmup" / "seed0" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"] == str(step_checkpoint(rebuilt, 1))
    for name in ("eval/test/predictions.jsonl", "eval/dev/predictions.jsonl"):
        assert (moved / "warmup" / "seed0" / name).read_bytes() == (tmp_path / "gone" / "warmup" / "seed0" / name).read_bytes()
    assert {path: path.read_bytes() for path in (moved / "sft" / "seed0").rglob("*") if path.is_file()} == sft_files
    assert compare(spec, moved, "--status") == 0
    assert "(its checkpoints" not in capsys.readouterr().out  # nothing left to start from it
    assert compare(spec, moved) == 0
    assert ": training" not in capsys.readouterr().out
    # Had the imported SFT run been trained where the arithmetic differs, the rebuilt warm start's log would depart from
    # its own: the warmup run would not branch from the run it is paired with. The pair is refused (or, allowed, listed),
    # and no run starts from that rebuild.
    log = moved / "sft" / "seed0" / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("".join(json.dumps({**row, "loss": row["loss"] + 1e-7} if row.get("step") == 1 and "loss" in row else row) + "\n"
                           for row in rows))
    mixed = "warmup seed 0 and sft seed 0 (their logs should share sft seed 0's first 1 steps and depart at step 1: loss)"
    assert compare(spec, moved) == 2
    assert mixed in capsys.readouterr().err
    for variant in ("warmup", "sft+same_time"):
        shutil.rmtree(moved / variant / "seed0")
    assert compare(spec, moved, "--status") == 0
    assert "warm starts (its checkpoints were not kept or not imported): done, but its log departs from sft seed 0's at " \
           "step 1: loss: no run starts from it" in capsys.readouterr().out
    assert compare(spec, moved) == 2
    err = capsys.readouterr().err
    assert "its first 1 steps again for the warm starts departs from that run's log at step 1: loss" in err and "-warm-start in place" in err
    assert not (moved / "warmup" / "seed0" / "config.yaml").exists()
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text(SPEC + "allow_mixed_machines: true\n")
    assert compare(allowed, moved) == 0
    assert json.loads((moved / "summary.json").read_text())["mixed_machine_pairs"] == [mixed]
    # Found from the runs' logs alone: summarised from their archive where no rebuild folder is, the pair is listed too.
    elsewhere = tmp_path / "elsewhere"
    assert compare(allowed, moved, "--export", str(tmp_path / "mixed.json.gz")) == 0
    assert compare(allowed, elsewhere, "--import", str(tmp_path / "mixed.json.gz")) == 0 and compare(allowed, elsewhere) == 0
    assert not (elsewhere / "sft" / "seed0-warm-start").exists()
    assert json.loads((elsewhere / "summary.json").read_text())["mixed_machine_pairs"] == [mixed]

    # Refused, with nothing written: a run trained under another config, predictions of other examples, a run
    # still training where one would go, a file that is no archive.
    fresh = tmp_path / "fresh"
    edited = tmp_path / "edited.yaml"
    edited.write_text(SPEC.replace("warmup.num_warmups: 2", "warmup.num_warmups: 3"))
    assert compare(edited, fresh, "--import", str(whole)) == 2
    assert "warmup seed 0 was trained with another config than" in capsys.readouterr().err
    others = rewrite(whole, tmp_path / "others.json.gz", lambda c: c["runs"]["sft"]["0"]["test_predictions"].reverse())
    assert compare(spec, fresh, "--import", str(others)) == 2
    assert "others.json.gz: sft seed 0: tested on other examples than this comparison's test split (6 predictions, 6 examples, " \
           "first different at row 1)" in capsys.readouterr().err
    (fresh / "warmup" / "seed0").mkdir(parents=True)
    (fresh / "warmup" / "seed0" / "metrics.jsonl").write_text("{}\n")
    assert compare(spec, fresh, "--import", str(whole)) == 2
    assert "holds a run that has not finished; delete it" in capsys.readouterr().err
    (tmp_path / "text.json.gz").write_text("not gzip")
    assert compare(spec, fresh, "--import", str(tmp_path / "text.json.gz")) == 2
    assert "not a warmgen runs archive" in capsys.readouterr().err
    assert sorted(p.name for p in fresh.rglob("*")) == [".lock", "metrics.jsonl", "seed0", "warmup"]
    # Runs of seeds or variants the comparison does not have are left out.
    assert compare(edited, fresh, "--import", str(whole), "--seeds", "1") == 0
    assert capsys.readouterr().out.count("not in this comparison's variants and seeds, left out") == 3


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12),
       st.sampled_from(["format", "runs", "runs.v", "runs.v.0"]))
@example(value={"\n": None}, where="runs.v")  # a seed named by a newline: still one line
def test_a_malformed_archive_is_one_error_naming_the_file(tmp_path_factory, value, where):
    """Whatever JSON an archive holds in place of its format, runs or a run, reading it gives a run table or a DataError."""
    run = {"config": "", "results": "", "metrics": "", "test_scores": "", "test_predictions": []}
    content = {"format": "warmgen-runs/1", "runs": {"v": {"0": run}}}
    if where == "format":
        content["format"] = value
    elif where == "runs":
        content["runs"] = value
    elif where == "runs.v":
        content["runs"]["v"] = value
    else:
        content["runs"]["v"]["0"] = value
    path = tmp_path_factory.mktemp("archive") / "runs.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(content, f)
    try:
        runs = read_archive(path)
    except DataError as err:
        assert str(err).startswith(f"{path}: field ") and "\n" not in str(err)
    else:
        assert all(isinstance(run["test_predictions"], list) for seeds in runs.values() for run in seeds.values())
