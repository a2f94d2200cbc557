"""The GPU evidence kit runs end to end on CPU at tiny size and writes its records."""

import json

from benchmarks.gpu_evidence import main


def test_the_kit_measures_throughput_then_sizes_and_runs_the_g2p_comparison(tmp_path):
    out = tmp_path / "out"
    main(["--out", str(out), "--work", str(tmp_path / "work"), "--tiny", "--minutes", "30", "--commit", "abc123"])
    throughput = json.loads((out / "gpu-throughput.json").read_text())
    assert throughput["benchmark"] == "gpu-throughput" and throughput["git_commit"] == "abc123"
    rows = throughput["results"]
    assert {(r["model"], r["method"], r["k"]) for r in rows} == {(m, "sft", None) for m in ("t5-tiny", "llama-tiny")} | {
        (m, "warmup", 2) for m in ("t5-tiny", "llama-tiny")}
    assert all(r["seconds_per_step"] > 0 and r["target_tokens_per_second"] > 0 for r in rows)
    assert all(r["ratio_to_sft"] == 1 for r in rows if r["method"] == "sft")
    g2p = json.loads((out / "gpu-g2p.json").read_text())
    assert set(g2p["results"]["versus_baseline"]) == {"marginal+warm_start", "fixed_warmup_4"}
    assert g2p["settings"]["epochs"] > 0 and (out / "g2p-report" / "report.md").is_file()
    header = json.loads((tmp_path / "work" / "g2p" / "marginal+warm_start" / "seed0" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"].endswith("step-" + str(g2p["settings"]["spec"]["overrides"]["warmup.sft_warm_start_steps"]))


def test_a_part_that_does_not_fit_the_time_left_is_recorded_as_not_run(tmp_path):
    main(["--out", str(tmp_path), "--tiny", "--minutes", "0", "--parts", "throughput", "g2p", "--commit", "abc123"])
    assert "not_run" in json.loads((tmp_path / "gpu-g2p.json").read_text())["results"]
