"""docs/configuration.md is generated and complete; shipped configs load; the G2P config is the demo's; tables are the records."""

import dataclasses
import re
from pathlib import Path

import pytest

from benchmarks.summary_table import GENERATED, marked_pages
from warmgen.config import SECTIONS, TOP_LEVEL, WarmupConfig
from warmgen.config_files import load_config
from warmgen.demo import demo_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_reference_is_generated_from_the_dataclasses_and_documents_every_field():

    reference = __import__("warmgen.config_reference", fromlist=["reference"]).reference()
    assert (ROOT / "docs" / "configuration.md").read_text() == reference, \
        "docs/configuration.md is stale: python -m warmgen.config_reference > docs/configuration.md"
    missing = [name for name in TOP_LEVEL if f"`{name}`" not in reference]
    for section, cls in SECTIONS.items():
        missing += [f"{section}.{f.name}" for f in dataclasses.fields(cls) if f"`{section}.{f.name}`" not in reference]
    assert not missing
    assert not re.search(r"\|  \|$", reference, re.M), "a field without a comment in config.py"


RUN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("**/*.yaml") if p.parent.name not in ("compare", "accelerate"))


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_shipped_configs_load(path):
    assert isinstance(load_config(path), WarmupConfig)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "compare").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_comparison_specs_load(path):
    from warmgen.compare import load_spec

    assert load_spec(path)["variants"]


def test_g2p_config_is_the_demo(tmp_path):
    shipped = load_config(ROOT / "configs" / "g2p-bart.yaml").to_dict()
    demo = demo_config("warmup", tmp_path, []).to_dict()
    for key in ("output_dir", "config_dir"):
        shipped.pop(key), demo.pop(key)
    assert shipped == demo


def test_results_tables_are_the_records():
    """Every table in the README or docs/ marked `<!-- summary_table.py ARGS -->` is what the script prints with ARGS."""
    import shlex

    from benchmarks.summary_table import main
    pages = marked_pages()
    blocks = [(path, block) for path in pages for block in GENERATED.finditer(path.read_text())]
    opened = sum(path.read_text().count("<!-- summary_table.py") for path in pages)
    assert len(blocks) == opened, "a summary_table.py marker has no closing <!-- /summary_table.py --> after it"
    assert any("--record" not in b["args"] for _, b in blocks), "the results-at-a-glance table is missing"
    for path, block in blocks:
        args = shlex.split(block["args"])
        assert block["quoted"] == main(args), (f"{path.name}: table is stale: paste the output of "
                                               f"python -m benchmarks.summary_table {block['args'].strip()}")


def test_summary_table_tasks_and_exclude_split_the_glance_table():
    from benchmarks.summary_table import main

    def rows(*args):
        return set(main([*args]).splitlines()[2:])

    everything, chosen = rows(), rows("--tasks", "g2p-full", "g2p")
    assert chosen and chosen < everything and all(row.split(" | ")[0] in ("| g2p-full", "| g2p") for row in chosen)
    assert rows("--exclude", "g2p-full", "g2p") == everything - chosen


def test_a_partial_record_reads_still_training_unless_it_says_why_its_runs_stopped(tmp_path):
    import json

    from benchmarks.summary_table import table

    record = json.loads((ROOT / "benchmarks" / "results" / "suite" / "g2p-full-t5-partial-2026-11-30.json").read_text())
    for name, changes in (("a", {"stopped": None}), ("b", {}), ("c", {"complete": True, "stopped": None})):
        (tmp_path / f"{name}-2026-11-30.json").write_text(json.dumps({**record, **changes, "benchmark": f"suite/{name}"}))
    seeds = {row.split(" | ")[0].strip("| "): row.split(" | ")[1] for row in table(tmp_path).splitlines()[2:]}
    assert seeds == {"a": "1 (still training)", "b": "1 (stopped)", "c": "1"}


def test_a_partial_record_whose_variants_have_different_seeds_shows_each_row_on_its_paired_seeds(tmp_path, monkeypatch):
    import json

    from benchmarks import summary_table

    record = json.loads((ROOT / "benchmarks" / "results" / "suite" / "g2p-no-dropout-2026-11-22.json").read_text())
    summary = record["summary"]
    summary["seeds"] = {"sft": [0, 1, 2], "marginal+warm_start": [1], "marginal+warm_start+merge_repeats": [0, 1, 2]}
    path = tmp_path / "g2p-no-dropout-partial-2026-11-22.json"
    path.write_text(json.dumps({**record, "complete": False}))
    rows = [row.split(" | ") for row in summary_table.table(tmp_path).splitlines()[2:]]
    variant, sft = (summary["table"][v]["wer"]["per_seed"]["1"] for v in ("marginal+warm_start", "sft"))
    assert rows[0][1:2] + rows[0][5:7] == ["1 (still training)", f"{variant:.3f}", f"{sft:.3f}"]  # both at seed 1: no ± over one
    merge, sft = (summary["table"][v]["wer"] for v in ("marginal+warm_start+merge_repeats", "sft"))
    assert rows[1][1:2] + rows[1][5:7] == ["3 (still training)", f"{merge['mean']:.3f} ± {merge['std']:.3f}", f"{sft['mean']:.3f} ± {sft['std']:.3f}"]
    monkeypatch.setattr(summary_table, "find_record", lambda name: path)
    lines = summary_table.variant_table(path.name, ["wer"]).splitlines()
    assert lines[0] == "| variant | seeds | wer |" and lines[3].startswith("| marginal+warm_start | 1 | ")
    assert lines[2].startswith("| sft (baseline) | 0, 1, 2 | ") and " ± " in lines[2] and " ± " not in lines[3]


def test_update_rewrites_a_stale_or_empty_table_and_leaves_a_current_page_alone(tmp_path):
    from benchmarks.summary_table import main, update_pages

    marker = "<!-- summary_table.py --tasks g2p-full-t5 -->"
    current = tmp_path / "current.md"
    current.write_text(f"text\n{marker}\n{main(['--tasks', 'g2p-full-t5'])}\n<!-- /summary_table.py -->\nmore\n")
    empty = tmp_path / "empty.md"
    empty.write_text(f"text\n{marker}\n<!-- /summary_table.py -->\nmore\n")
    assert update_pages([current, empty]) == [empty] and empty.read_text() == current.read_text()


def test_summary_table_refuses_unknown_columns():

    from benchmarks.summary_table import variant_table
    with pytest.raises(SystemExit, match="no column 'bleu'.*wer"):
        variant_table("g2p-same-time-2026-11-22.json", ["wer", "bleu"])


def test_training_curves_copies_logged_values_and_names_missing_steps(tmp_path):
    """benchmarks/training_curves.py: values at the asked steps from training log lines (not
    evaluation lines, older key names read as today's), the median seconds per step, and a missing
    step named with the file."""
    import json

    from benchmarks.training_curves import run_curves
    rows = [{"step": 25, "epoch": 0.5, "loss": 2.0, "time/step": 0.3, "warmup/truncated_ratio": 1.0},
            {"step": 50, "epoch": 1.0, "loss": 1.5, "time/step": 0.1, "completions/clipped_ratio": 0.5},
            {"step": 50, "epoch": 1.0, "dev/wer": 0.9},
            {"step": 75, "epoch": 1.5, "loss": 1.2, "time/step": 0.2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_curves(tmp_path, ["completions/clipped_ratio"], [25, 50, 75]) == {
        "median_seconds_per_step": 0.2, "median_seconds_per_step_by_epoch": {"1": 0.2, "2": 0.2},
        "completions/clipped_ratio": {"25": 1.0, "50": 0.5, "75": None}}
    with pytest.raises(SystemExit, match=r"metrics.jsonl: no training log line at step\(s\) \[60\]; it logs every 25 steps up to 75"):
        run_curves(tmp_path, [], [60])
    assert run_curves(tmp_path, [], [], evaluations=True)["evaluations"] == [{"step": 50, "epoch": 1.0, "dev/wer": 0.9}]


def test_reliability_claims_name_tests_that_exist():
    """Every promise in docs/reliability.md names tests, and every test it names exists."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith(("| promise", "|---"))]
    assert rows and all("tests/" in row for row in rows), "a promise without a test"
    for path, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text):
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE), f"{path}::{name} does not exist"


def test_readme_demo_table_is_the_demo_record():
    """The numbers of the README's demo table are those of the demo record the section names first."""
    import json

    section = (ROOT / "README.md").read_text().split("## The demo\n", 1)[1].split("\n## ", 1)[0]
    record = json.loads((ROOT / "benchmarks" / "results" / re.search(r"benchmarks/results/(demo/demo-[\d-]+\.json)", section)[1]).read_text())
    assert f"**{record['total_seconds'] / 60:.1f} minutes in all**" in section
    for method, label in (("sft", "SFT"), ("warmup", "Warmup Generations")):
        result = record["results"][method]
        test = result["test"]
        row = (f"| {label} | {test['wer']:.3f} | {test['per']:.3f} | {test['exact_match']:.3f} | {result['train_seconds']:.0f} | "
               + (f"{test['warmup/mean_length']:.2f} |" if method == "warmup" else "– |"))
        assert row in section, f"README demo table lacks {row}"


def test_relative_links_in_the_readme_and_docs_point_at_files_that_exist():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_every_record_has_the_envelope_and_no_absolute_paths():
    """Records sit in benchmarks/results/<benchmark>/, open with the same fields, and hold paths
    relative to the checkout: written by benchmarks/recording.py (older ones migrated)."""
    import json

    records = sorted((ROOT / "benchmarks" / "results").glob("*/*.json"))
    assert len(records) >= 40 and not list((ROOT / "benchmarks" / "results").glob("*.json"))
    for path in records:
        text = path.read_text()
        record = json.loads(text)
        assert list(record)[:5] == ["benchmark", "command", "git_commit", "date", "machine"], path
        assert not re.search(r"(?<![\w.])/(work|root|home|tmp)/", text), path


def test_a_record_is_written_with_the_envelope_and_portable_paths(tmp_path, monkeypatch):
    import json

    from benchmarks import recording

    monkeypatch.setattr(recording, "RESULTS", tmp_path)
    monkeypatch.setattr("sys.argv", [str(ROOT / "benchmarks" / "cost.py"), "--models", str(ROOT / "runs" / "x")])
    first = recording.write_record("cost", "cost", {"results": {str(ROOT.parent / "runs" / "y"): 1}})
    second = recording.write_record("cost", "cost", {"results": {}})
    record = json.loads(first.read_text())
    assert first.parent == tmp_path / "cost" and second.name == first.name.replace(".json", "-2.json")
    assert record["command"] == "python -m benchmarks.cost --models runs/x" and record["results"] == {"../runs/y": 1}
    assert record["git_commit"] and record["machine"]["cpu_count"] >= 1


def test_the_own_task_guide_runs_as_written_at_tiny_size(tmp_path, monkeypatch):
    """docs/own-task.md's Python, in order, with a tiny preset and two steps instead of 30 epochs."""
    import re

    page = (ROOT / "docs" / "own-task.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) == 2
    code = ("\n".join(blocks).replace('"epochs": 30', '"max_steps": 2').replace('"bart-mini"', '"bart-tiny"')
            .replace('"sft_warm_start_steps": 75', '"sft_warm_start_steps": 1'))
    assert code.count('"max_steps": 2') == code.count('"bart-tiny"') == code.count('"sft_warm_start_steps": 1') == 1  # still there
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/own-task.md", "exec"), namespace)
    assert set(namespace["results"]) == {"sft", "warmup"} and len((tmp_path / "train.jsonl").read_text().splitlines()) == 70
