"""`warmgen` command line: train | eval | generate | compare | demo.

    warmgen train --config configs/g2p-bart.yaml --warmup.num_warmups 8
    warmgen train --config configs/g2p-bart.yaml --output_dir runs/x --resume
    warmgen eval runs/x --split test
    warmgen generate runs/x warmup hello
    warmgen compare configs/compare-g2p.yaml
    warmgen demo
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .config import WarmupConfig
from .config_files import load_config, parse_overrides, set_value
from .config_reference import keys_help
from .errors import ConfigError, DataError, RunFolderError, TrainingError
from .methods import decodes_with_warmup
from .validation import validate

OVERWRITE = ("move", "delete")
OVERWRITE_HELP = "when output_dir holds an earlier run: move it to OUTPUT_DIR.previous-N, or delete it, and start over"


def _quiet_transformers() -> None:
    """One progress bar per checkpoint save or load would drown the training bar. Called where a command
    starts on models, so that a config error is reported before torch and transformers are imported."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _load(path: str, overrides: list[str]):
    """A checkpoint (or a run's best) with the command line's overrides on its saved config. Whether its model
    code may run is the command line's word (`--model.trust_remote_code`), never the checkpoint's own config."""
    _quiet_transformers()
    from .checkpoint import load_checkpoint
    from .layout import make_layout
    from .rundir import checkpoint_folder

    pairs = parse_overrides(overrides)
    folder = checkpoint_folder(Path(path))
    asked = _asked(pairs)
    model, tokenizer, sep_id, config = load_checkpoint(folder, asked.model)
    for key, value in pairs:
        set_value(config, key, value)
    validate(config)
    return folder, model, make_layout(model, tokenizer, sep_id, config), config


def _asked(pairs: list) -> WarmupConfig:
    """The defaults under the command line's overrides: what the person said, where a file in the folder being loaded
    may not decide (trust, and where a resumed run pauses)."""
    asked = WarmupConfig()
    for key, value in pairs:
        set_value(asked, key, value)
    return asked


def cmd_train(args, overrides: list[str]) -> None:
    pairs = parse_overrides(overrides)
    saved = None if args.config else _saved_config(args.resume, pairs)
    config = load_config(args.config or saved, pairs)
    asked = _asked(pairs)
    if args.config is None:  # trust is the person's, never a file's in the run folder
        config.model.trust_remote_code, config.model.allow_bin_weights = asked.model.trust_remote_code, asked.model.allow_bin_weights
    if saved is not None:  # a run resumed from its own config goes on to its end unless told where to pause
        config.train.stop_after_step = asked.train.stop_after_step
    _quiet_transformers()
    from .train import train

    results = train(config, resume=args.resume, overwrite=args.overwrite)
    if results is not None:  # only the main process has results
        print(json.dumps(results["splits"], indent=2, ensure_ascii=False) if results["splits"] else
              "no dev or test split, so nothing was evaluated (data.dev_file, data.test_file); the model is in checkpoints/last")
        print(f"run directory: {config.output_dir}")


def _saved_config(resume: bool, pairs: list) -> Path | None:
    """With `--resume` and no `--config`: the config the run in `--output_dir` was started with (its config.yaml), under
    the command line's overrides; a change they make to the computation is still refused, by name."""
    output_dir = dict(pairs).get("output_dir")
    if not resume or output_dir is None:
        return None
    from .rundir import run_config_file

    saved = run_config_file(Path(str(output_dir)))
    if not saved.is_file():
        raise ConfigError(f"--resume: {output_dir} holds no run to continue ({saved} is missing); start one without --resume")
    return saved


def cmd_eval(args, overrides: list[str]) -> None:
    from .evaluate import SCORES, evaluate, write_eval
    from .rundir import hold_folder, new_evaluation_folder, run_of
    from .tasks import load_task

    if args.output and (Path(args.output) / SCORES).exists():
        raise ConfigError(f"--output {args.output} holds an evaluation already: name a new folder (nothing is written over)")
    folder, model, layout, config = _load(args.path, overrides)
    run_dir = run_of(folder)
    output = Path(args.output) if args.output else new_evaluation_folder(run_dir, args.split)
    # Never into a run folder that a training run is still writing (it replaces eval/ when it ends).
    lock = None if args.output else hold_folder(run_dir, "warmgen eval")
    try:
        task = load_task(config)
        scores, predictions = evaluate(model, layout, task, args.split, config, use_warmup=decodes_with_warmup(config))
        write_eval(output, scores, predictions, {"checkpoint": str(folder), "split": args.split, "config": config.to_dict()})
    finally:
        if lock is not None:
            lock.close()
    print(json.dumps(scores, indent=2))
    print(f"wrote {output / 'results.json'} and {output / 'predictions.jsonl'}")


def cmd_generate(args, overrides: list[str]) -> None:
    from .records import read_lines
    from .trainer import generate

    _, model, layout, config = _load(args.path, overrides)
    inputs = list(args.inputs)
    if args.file:
        inputs += [line for line in read_lines(Path(args.file)) if line.strip()]
    if not inputs:
        raise ConfigError("generate: give inputs as arguments or with --file")
    for text, (warmup, output) in zip(inputs, generate(model, layout.tokenizer, inputs, config)):
        if args.json:
            print(json.dumps({"input": text, "warmup": warmup, "output": output}, ensure_ascii=False))
        else:
            print(text)
            if warmup is not None:
                print(f"  warmup: {warmup}")
            print(f"  output: {output}")


def cmd_compare(args, overrides: list[str]) -> None:
    from .compare import comparison_status, export_runs, import_runs, report_finished, run_comparison

    if args.status:
        print(comparison_status(args.spec, args.output_dir, overrides, args.seeds, args.variants))
    elif args.partial:
        report_finished(args.spec, args.output_dir, args.seeds, args.variants)
    elif args.export:
        names = export_runs(args.spec, args.export, args.output_dir, args.seeds, args.variants)
        print(f"[compare] wrote {args.export}: {', '.join(names)}")
    elif args.import_:
        for line in import_runs(args.spec, args.import_, args.output_dir, overrides, args.seeds, args.variants):
            print(f"[compare] {line}")
    else:
        run_comparison(args.spec, args.output_dir, overrides, args.jobs, seeds=args.seeds, variants=args.variants)


def cmd_demo(args, overrides: list[str]) -> None:
    _quiet_transformers()
    from .demo import run_demo

    run_demo(args.output_dir, parse_overrides(overrides), args.overwrite)


def _one_line_warnings(show):
    """warmgen's own warnings as one `warmgen: warning:` line (as its errors), the libraries' as Python shows them."""
    def show_warning(message, category, filename, lineno, file=None, line=None):
        if Path(filename).resolve().is_relative_to(Path(__file__).parent):
            print(f"warmgen: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


def _parser() -> argparse.ArgumentParser:
    """The command line: its subcommands and their arguments (config keys come as --section.key value overrides)."""
    parser = argparse.ArgumentParser(prog="warmgen", description="Warmup Generations vs SFT: train, evaluate, generate.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = "config keys, each also --section.key=value (default, then what it sets; docs/configuration.md has it all):\n"
    p = sub.add_parser("train", help="train a model (SFT or warmup); extra --section.key value pairs override the config",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=keys + keys_help())
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last (without --config, with the "
                   "config the run was started with)")
    p.add_argument("--overwrite", choices=OVERWRITE, help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_train)

    overrides_help = ("--section.key value overrides any config key of the checkpoint's saved config (warmgen train --help lists "
                      "them), e.g. --decode.num_beams 4")
    p = sub.add_parser("eval", help="evaluate a run directory or checkpoint on a split; writes results.json", epilog=overrides_help)
    p.add_argument("path")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--output", help="a new folder for results.json and predictions.jsonl (default RUN/evaluations/SPLIT-N, the "
                   "first free N: the run's own eval/ stays as training wrote it)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("generate", help="print the warmup and output for inputs", epilog=overrides_help)
    p.add_argument("path", help="run directory or checkpoint folder")
    p.add_argument("inputs", nargs="*", help="input texts")
    p.add_argument("--file", help="a file with one input per line")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("compare", help="train every variant x seed of a comparison spec and report differences with seed-level tests",
                       epilog="spec keys (docs/compare.md): base (a config file), seeds, variants (name: overrides), baseline, "
                       "bootstrap (resamples), output_dir, overrides (for every variant), contrasts ([[variant, reference]]), budget "
                       "(epochs | wall_clock), warm_start_from, same_time_as, allow_mixed_machines. --section.key value overrides "
                       "every variant's config (warmgen train --help lists the keys)")
    p.add_argument("spec", help="comparison YAML: base, seeds, baseline, bootstrap, variants")
    p.add_argument("--output_dir", help="comparison folder (default: the spec's output_dir or runs/compare-<spec name>)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--status", action="store_true", help="show which runs are done, training, stopped or pending; train nothing")
    only.add_argument("--partial", action="store_true", help="summary, report and plots of the runs finished so far (each "
                      "variant at the seeds it has finished, each test paired on the seeds both sides have); train nothing")
    only.add_argument("--export", metavar="FILE", help="write the finished runs (no weights, no dataset text) into a new "
                      "gzipped JSON FILE; train nothing")
    only.add_argument("--import", dest="import_", metavar="FILE", nargs="+", help="put the finished runs of archives made by "
                      "--export into the comparison folder (checked against the spec and the task); train nothing")
    p.add_argument("--seeds", type=int, nargs="+", help="train and summarise these seeds instead of the spec's, in this order "
                   "(e.g. one seed now, the others later: finished runs are kept)")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="train and summarise only these variants, in this order, with "
                   "what they need (the baseline, the warm start's source, the variant whose training time one gets): e.g. the "
                   "runs that fit in the hours at hand now, the others later")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process; each gets cores / jobs "
                   "threads unless OMP_NUM_THREADS is set (default 1)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="SFT vs Warmup Generations on built-in CMUdict G2P with a 1M-parameter model (about 12 minutes on 2 CPU cores)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=keys + keys_help())
    p.add_argument("--output_dir", default="runs/demo")
    p.add_argument("--overwrite", choices=OVERWRITE, help=OVERWRITE_HELP + " (without it a finished demo is shown again)")
    p.set_defaults(func=cmd_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(argv)
    debug = args.debug or "--debug" in rest
    rest = [r for r in rest if r != "--debug"]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            args.func(args, rest)
    except (ConfigError, DataError, FileNotFoundError, RunFolderError, TrainingError) as err:
        if debug:
            raise
        print(f"warmgen: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the operating system's word: no space, permission denied, not a directory, ...
        if debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"warmgen: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("warmgen: interrupted; resume training with --resume", file=sys.stderr)
        return 130
    finally:
        distributed = sys.modules.get("warmgen.distributed")  # only a command that imported it can have joined a process group
        if distributed is not None:
            distributed.leave_process_group()  # on errors too, so a multi-process run exits with its own code
    return 0


if __name__ == "__main__":
    sys.exit(main())
