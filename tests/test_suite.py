"""benchmarks/suite.py --partial: what a comparison still training shows so far."""

from test_compare import TINY

from benchmarks.suite import finished_so_far
from warmgen.cli import main


def test_a_partial_summary_keeps_every_finished_run_and_pairs_each_test_on_the_seeds_both_sides_have(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [0, 1]\nbootstrap: 20\ncontrasts: [[warmup, sft], [later, sft]]\n"
                    "variants:\n  sft: {method: sft}\n  warmup: {warmup.num_warmups: 2}\n  later: {warmup.num_warmups: 3}\n")
    out = tmp_path / "cmp"
    assert finished_so_far(spec, out) is None  # nothing to compare with before the baseline's first run ends
    assert main(["compare", str(spec), "--output_dir", str(out), "--partial"]) == 2
    trained = tmp_path / "trained.yaml"
    trained.write_text(spec.read_text().replace("seeds: [0, 1]", "seeds: [0]").replace("  later: {warmup.num_warmups: 3}\n", "")
                       .replace(", [later, sft]", ""))
    assert main(["compare", str(trained), "--output_dir", str(out), *TINY]) == 0
    seed0 = finished_so_far(spec, out)
    assert seed0["spec"]["seeds"] == [0] and seed0["seeds"] == {"sft": [0], "warmup": [0]}
    assert list(seed0["contrasts"]) == ["warmup vs sft"]
    assert finished_so_far(spec, out, seeds=[1]) is None  # --seeds 1: its baseline has not finished

    # The baseline finishes a second seed, the warmup variant not yet: both are kept, the test pairs seed 0 only.
    (tmp_path / "sft-only.yaml").write_text("seeds: [1]\nvariants:\n  sft: {method: sft}\n")
    assert main(["compare", str(tmp_path / "sft-only.yaml"), "--output_dir", str(out), *TINY]) == 0
    both = finished_so_far(spec, out)
    assert both["spec"]["seeds"] == [0, 1] and both["seeds"] == {"sft": [0, 1], "warmup": [0]}
    assert set(both["table"]["sft"]["wer"]["per_seed"]) == {"0", "1"} and set(both["table"]["warmup"]["wer"]["per_seed"]) == {"0"}
    assert both["versus_baseline"] == seed0["versus_baseline"] and both["contrasts"] == seed0["contrasts"]
    assert finished_so_far(spec, out, seeds=[1])["seeds"] == {"sft": [1]} and finished_so_far(spec, out, seeds=[1])["versus_baseline"] == {}

    assert main(["compare", str(spec), "--output_dir", str(out), "--partial"]) == 0  # the same, with report and plots
    report = (out / "report.md").read_text().splitlines()
    assert "1-2 seeds a variant" in report[0] and "| variant | seeds |" in "\n".join(report)
    assert "| sft | 0, 1 |" in "\n".join(report) and "| warmup | 0 |" in "\n".join(report)


def test_a_label_names_one_tasks_partial_record_only(monkeypatch, capsys):
    import pytest

    from benchmarks import suite

    for argv in (["--tasks", "g2p-full", "--label", "g2p-full-t5"], ["--tasks", "g2p-full", "xsum-full", "--partial", "--label", "x"]):
        monkeypatch.setattr("sys.argv", ["suite", *argv])
        with pytest.raises(SystemExit) as stop:
            suite.main()
        assert stop.value.code == 2 and "--label names the partial record of one task" in capsys.readouterr().err
