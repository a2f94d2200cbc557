"""benchmarks/suite.py --partial: what a comparison still training shows so far."""

from test_compare import TINY

from benchmarks.suite import finished_so_far
from warmgen.cli import main


def test_a_partial_summary_keeps_the_seeds_and_variants_that_have_finished(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [0, 1]\nbootstrap: 20\ncontrasts: [[warmup, sft], [later, sft]]\n"
                    "variants:\n  sft: {method: sft}\n  warmup: {warmup.num_warmups: 2}\n  later: {warmup.num_warmups: 3}\n")
    out = tmp_path / "cmp"
    assert finished_so_far(spec, out) is None  # nothing to compare with before the baseline's first run ends
    trained = tmp_path / "trained.yaml"
    trained.write_text(spec.read_text().replace("seeds: [0, 1]", "seeds: [0]").replace("  later: {warmup.num_warmups: 3}\n", "")
                       .replace(", [later, sft]", ""))
    assert main(["compare", str(trained), "--output_dir", str(out), *TINY]) == 0
    summary = finished_so_far(spec, out)
    assert summary["spec"]["seeds"] == [0] and set(summary["table"]) == {"sft", "warmup"}
    assert list(summary["contrasts"]) == ["warmup vs sft"]
    assert finished_so_far(spec, out, seeds=[1]) is None  # --seeds 1: its baseline has not finished
    assert finished_so_far(spec, out, seeds=[1, 0])["spec"]["seeds"] == [0]


def test_a_label_names_one_tasks_partial_record_only(monkeypatch, capsys):
    import pytest

    from benchmarks import suite

    for argv in (["--tasks", "g2p-full", "--label", "g2p-full-t5"], ["--tasks", "g2p-full", "xsum-full", "--partial", "--label", "x"]):
        monkeypatch.setattr("sys.argv", ["suite", *argv])
        with pytest.raises(SystemExit) as stop:
            suite.main()
        assert stop.value.code == 2 and "--label names the partial record of one task" in capsys.readouterr().err
