"""The run configuration: one `WarmupConfig` of sections (model, data, warmup, pause, train,
decode), each field documented by the comment above it (docs/configuration.md is made from them).

Fields are checked as they are set, in the constructor too: `WarmupConfig(train={"epochs": 2})`,
`config.warmup.num_warmups = 8`. Unknown keys (with the closest valid one) and wrong types raise
`ConfigError`; the checks across fields run when a config is built, loaded or trained (`validate`).
YAML files and `--section.key value` overrides are read by config_files.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, cast

import yaml

from .errors import ConfigError
from .typecheck import check_type, field_types
from .validation import validate


class _Checked:
    """A config section whose fields are checked as they are set: an unknown name or a value of the
    wrong type is a ConfigError naming the field, never an attribute silently added or a failure later."""

    def __setattr__(self, name: str, value: Any) -> None:
        types_ = field_types(cast(Any, type(self)))  # a class is hashable, whatever its instances are
        prefix = "" if type(self) is WarmupConfig else f"{SECTION_NAMES[type(self)]}."
        if name not in types_:
            close = difflib.get_close_matches(name, types_, n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid: {', '.join(prefix + n for n in types_)}"
            raise ConfigError(f"unknown config key '{prefix}{name}': {hint}")
        object.__setattr__(self, name, check_type(value, types_[name], prefix + name))


@dataclass
class ModelConfig(_Checked):
    """Which model to train and how to build it."""

    # A preset built from scratch (`warmgen.models.PRESETS`: `t5-tiny`, `bart-tiny`, `mt5-tiny`, `t5-mini`, `bart-mini`,
    # `t5-g2p`, `bart-g2p`, `t5-small-scratch`, `t5-10m`, `t5-100m`, `llama-tiny`, `llama-mini`, `llama-10m`, `llama-100m`,
    # `gpt2-tiny`; sizes and which to start from: docs/tasks-and-models.md), `smollm2-135m`
    # (the offline SmolLM2-135M-Instruct GGUF), a local `save_pretrained` folder, or a hub id.
    name: str = "t5-mini"
    # The tokenizer a preset trains on the training split: `bpe` (byte-level BPE of vocab_size
    # tokens), `symbols` (one token per whitespace-separated target symbol and per character of
    # the input, as G2P models use), `char` (one token per character on both sides, spaces
    # included: digits, spelling, any task where BPE would merge what the model must see apart),
    # or `auto` (`symbols` for the built-in g2p task, else `bpe`).
    tokenizer: Literal["auto", "bpe", "symbols", "char"] = "auto"
    # Presets with `bpe`: how many tokens the tokenizer has (`symbols` takes what the data has).
    vocab_size: int = 512
    # Causal models only: how the input is written before the warmup. `{source}` is replaced.
    prompt_template: str = "Input: {source}\nOutput:\n"
    # Causal models only: wrap a text input as a user turn in the tokenizer's chat template
    # (instruct models). Chat data (`messages` rows) always goes through the chat template.
    use_chat_template: bool = False
    # Off unless you trust the model's repository: it runs that repository's Python code.
    trust_remote_code: bool = False
    # A hub model's revision (a branch, tag or commit hash); null = its default branch.
    revision: Optional[str] = None
    # The weights' dtype: float32 (the default; CPUs train it best), or bfloat16 / float16 weights
    # for half the memory. train.mixed_precision bf16/fp16 instead keeps float32 weights and autocasts.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # transformers' attention kernel (`eager`, `sdpa`, `flash_attention_2`, ...); null = its default.
    attn_implementation: Optional[str] = None
    # Also load `pytorch_model.bin` weights when a model has no safetensors. A .bin file is a
    # pickle, which can run code as it loads: only for a model you trust. Off: safetensors only.
    allow_bin_weights: bool = False
    # How the new <sep> token's embedding starts: `random` (the model's initializer), `eos` (a copy
    # of the end-of-sequence token's rows), any text that is one token, e.g. "\n", or `auto` ("\n"
    # when a pretrained model learns warmups and its tokenizer writes a newline as one token; random
    # for SFT and for models trained from scratch). A random row is almost never predicted by a
    # pretrained model, so its warmups run to max_warmup_length; a copied row is predicted where
    # that token would be.
    sep_init: str = "auto"
    # LoRA adapters via `peft` (pretrained models only); 0 = full fine-tuning. The <sep>
    # embedding row is trained too. Checkpoints then hold the adapter, not the whole model.
    lora_rank: int = 0
    # LoRA's alpha: its updates are scaled by lora_alpha / lora_rank.
    lora_alpha: float = 16.0
    # Dropout on the LoRA adapters' inputs (peft's lora_dropout; model.dropout leaves it alone).
    lora_dropout: float = 0.05
    # The modules LoRA adapts (peft's target_modules, e.g. [q_proj, v_proj]); null = every linear layer.
    lora_target_modules: Optional[list[str]] = None
    # Every dropout rate of the model, e.g. 0.1 to regularise a preset (presets have none) or 0
    # to make warmup.merge_repeats exact under `auto`; null = the model's own. Kept in checkpoints.
    dropout: Optional[float] = None


@dataclass
class DataConfig(_Checked):
    """Where examples come from and how long they may be.

    `task` selects the reader and metrics: `auto` (`seq2seq` when data files, a dataset or in-memory
    rows are given, else the built-in `g2p`), `g2p` (built-in CMUdict grapheme-to-phoneme, needs no
    files), `seq2seq` (your files: JSONL, TSV, or a pair of line-aligned text files),
    `translation` (line-aligned files per language), `summarization` (JSONL documents), or
    `multiple_choice` (LogiQA 2.0 style JSONL).
    Relative paths are resolved against the config file's folder, then the data root
    (`$WARMGEN_DATA_ROOT`, default `../shared/data`).
    """

    # The reader and metrics (see above and docs/tasks-and-models.md); a run's config.yaml says which `auto` chose.
    task: str = "auto"
    # A Hugging Face dataset instead of files: a `save_to_disk` folder, or a name or folder for
    # `datasets.load_dataset` (offline: local files or the hub cache). Splits train, validation (or
    # dev) and test; a single Dataset is the train split.
    dataset: Optional[str] = None
    # The dataset's configuration (subset) for `datasets.load_dataset(data.dataset, name)`, e.g. "de-en".
    dataset_config: Optional[str] = None
    # The dataset's split to train on where it is not called train (TRL's dataset_train_split, e.g. "train_sft").
    dataset_split: Optional[str] = None
    # Each split's file: JSONL, a JSON array, CSV or TSV with the fields below, or the common
    # prefix of line-aligned parallel text files.
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    # `auto` picks from the extension: .jsonl, .json (an array of objects, or one object per
    # line), .csv (a header row names the columns), .tsv; for parallel text give the path
    # without extension plus `source_suffix`/`target_suffix` (e.g. train + .deu/.eng).
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parallel"] = "auto"
    # JSONL, JSON and CSV: the fields that hold the input (x) and the target (y); rows with TRL's
    # prompt/completion or messages columns are read as those instead.
    source_field: str = "input"
    target_field: str = "target"
    # Parallel text: the endings of the source and target files (`train` names train.src and train.tgt).
    source_suffix: str = ".src"
    target_suffix: str = ".tgt"
    # Longer inputs/targets are truncated (and counted in the run log).
    max_source_length: int = 64
    max_target_length: int = 64
    # Training examples over a limit: `truncate` (and count) or `error` (name the example).
    on_overlength: Literal["truncate", "error"] = "truncate"
    # Use only the first N examples of a split (train is shuffled first; 0 = all). A small dev
    # split keeps evaluation during training cheap; the test split is usually left whole.
    max_train_examples: int = 0
    max_dev_examples: int = 0
    max_test_examples: int = 0
    # g2p: held-out words per split; the split is a seeded shuffle of the dictionary.
    g2p_dev_size: int = 2000
    g2p_test_size: int = 2000
    g2p_split_seed: int = 0
    # Metrics to report; empty = the task's defaults.
    metrics: list[str] = field(default_factory=list)
    # Hold out this many shuffled training examples as the dev split when there is no dev_file.
    dev_size: int = 0
    # Text put before every source, e.g. a direction tag. In translation, {source_name} and
    # {target_name} become language names: "translate {source_name} to {target_name}: ".
    source_prefix: str = ""
    # Translation: language codes (deu, eng, fra, rus, zho, or any code used in your file names).
    # In file paths {lang} becomes each side's code and {flores} its FLORES-200 code (deu_Latn).
    source_lang: str = ""
    target_lang: str = ""
    # Optional model-based metrics from local checkpoints (nothing is downloaded); unset = skipped.
    comet_model: Optional[str] = None
    bertscore_model: Optional[str] = None
    # Multiple choice: `generate` parses the option letter the model writes after its warmup;
    # `options` scores every option by log-likelihood after the model's own warmup; `both`.
    mc_eval: Literal["generate", "options", "both"] = "both"


@dataclass
class WarmupOptions(_Checked):
    """Warmup Generations: sampling k warmups, scoring them, and the objective.

    Only read when `method: warmup`. The defaults follow the measured G2P sweep (docs/results-
    undertrained.md). Models trained from scratch need `sft_warm_start_steps` (pretrained ones
    already sample text).
    """

    # How sampled warmups train the model (docs/method.md): the best by reward, the marginal
    # likelihood over the k warmups, REINFORCE with a leave-one-out baseline, or LaTRO (Chen et
    # al. 2024): rloo on a KL-shaped reward, cut-off warmups penalised, the answer not trained.
    objective: Literal["best_of_k", "marginal", "rloo", "latro"] = "marginal"
    # beta of a KL term to P_ref, the model as warmup training starts (LoRA: adapters off): rloo and
    # latro shape the reward, R - beta*(log P(c|x) - log P_ref(c|x)); marginal and best_of_k add the
    # score-function gradient of -beta*KL. null: LaTRO's 0.05 for latro, 0 for the others.
    kl_coef: Optional[float] = None
    # Devices against collapse (docs/method.md). reward gain: rloo and latro take log P(y|x) (empty
    # warmup) as every warmup's baseline, Quiet-STaR's gain; marginal, best_of_k: no_warmup_candidate.
    reward: Literal["logp", "gain"] = "logp"
    # Entropy bonus: eta * the next-token entropy over each sampled warmup's positions; 0 = off.
    entropy_coef: float = 0.0
    # n of the k warmups proposed after `y <sep> x` (STaR's rationalisation, TRICE): marginal weighs
    # each by P(c|x) / q(c), q the mixture of both samplers; best_of_k takes them as STaR does. 0 = off.
    posterior_warmups: int = 0
    # Warmups cut at max_warmup_length: "penalty" (rloo, latro: 2 x the batch's mean reward, LaTRO's),
    # "mask" (left out of the loss, DAPO's), "keep". null: penalty for latro, else keep.
    cut_off: Optional[Literal["keep", "penalty", "mask"]] = None
    # The self-draft bound: each example's one warmup is the greedy answer of the model in this folder
    # (a run, e.g. the same recipe's SFT run, or a checkpoint; same vocabulary), in training and at
    # inference, cut at max_warmup_length; the model learns y after it, never to write it.
    draft_from: Optional[str] = None
    # Weight of the answer term log P(y|c,x) in rloo and latro. null: 1 for rloo, 0 for latro
    # (LaTRO's sft_penalty: the answer is learnt only through the warmups' rewards).
    answer_loss_weight: Optional[float] = None
    # k: warmups sampled per training example.
    num_warmups: int = 4
    # Warmup tokens before <sep> is forced; a warmup that reaches it counts as truncated.
    max_warmup_length: int = 8
    # <sep> is masked until the warmup has this many tokens (training and inference).
    min_warmup_length: int = 0
    # Sampling of training warmups. top_k 0 and top_p 1.0 mean off (pure sampling).
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    # Weight of the log P(c|x) term; 0 = warmups are only selected, never imitated.
    warmup_loss_weight: float = 1.0
    # How candidates are ranked (best_of_k's choice, the kept warmup, marginal's weights): "reward",
    # log P(y|c,x), the paper's score; "joint", lam*log P(c|x) + log P(y|c,x), with which marginal
    # maximises log sum over distinct candidates of P(c|x)^lam P(y|c,x), a lower bound of log P(y|x)
    # at lam 1 whatever chose them (a memory may). rloo's advantages stay on the reward.
    rank_by: Literal["reward", "joint"] = "reward"
    # Score a warmup drawn several times for one example once, counted as often as drawn (always with
    # rank_by joint): the same objective and gradient without dropout, less step time (docs/cost.md);
    # with dropout the copies share one mask, which made G2P worse. `auto`: merge without dropout.
    merge_repeats: Literal["auto", True, False] = "auto"
    # Adaptive k by agreement (beyond the paper): draw this many warmups per example first, the other
    # num_warmups - first_draws only where they are not all alike (trained models mostly repeat one
    # warmup, so most examples stop early). 0 = all k at once.
    first_draws: int = 0
    # Make the empty warmup one of the k candidates: a warmup must beat "no warmup" to win.
    no_warmup_candidate: bool = False
    # Optimizer steps of plain SFT (`y </s>`) before warmup sampling starts.
    sft_warm_start_steps: int = 0
    # Take those steps from an SFT run instead of training them again: its checkpoint at step
    # sft_warm_start_steps (`checkpoints/step-N`, kept by its train.save_checkpoints_at). The SFT
    # run's config must equal this one apart from method and warmup.*, so the result is the same
    # as training the warm start here, except that `best` is chosen among evaluations from step N on.
    sft_warm_start_from: Optional[str] = None
    # Amortised warmups (beyond the paper; cuts sampling and scoring): remember each training
    # example's best warmup (top-ranked by rank_by when last scored) and re-score it at every visit
    # beside only `fresh_warmups` new samples. An example's first visit samples num_warmups.
    # Kept warmups are saved in checkpoints, so a resumed run continues with them.
    keep_best_warmup: bool = False
    fresh_warmups: int = 1
    # With keep_best_warmup: fresh samples only at every m-th visit of an example; the visits
    # between train on the kept warmup alone.
    refresh_every: int = 1
    # Adaptive k, with keep_best_warmup: an example whose kept warmup already gives the target a
    # mean per-token log-probability >= this (e.g. -0.1) gets no fresh samples. None = off.
    target_reward: Optional[float] = None
    # A control, not Warmup Generations: every example's one warmup is this text, in training and at
    # inference, nothing sampled: does a variant that ends up writing one fixed warmup gain from the
    # extra positions or from what it learnt? Objective lam*A + R (rloo: R alone, no baseline).
    fixed_warmup: Optional[str] = None


@dataclass
class PauseConfig(_Checked):
    """Pause tokens (`method: pause`): learnt `<pause>` tokens between the input and the answer."""

    # How many `<pause>` tokens (then `<sep>`) stand between x and y, in training and at inference.
    num_tokens: int = 10


@dataclass
class TrainConfig(_Checked):
    """Optimiser, schedule, batching, evaluation and logging."""

    # AdamW; weight decay on matrices only (not biases and norms).
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    # Linear learning-rate warmup (not to be confused with warmup *generations*), then linear decay.
    lr_warmup_steps: int = 100
    # Gradients are clipped to this global norm; 0 = no clipping (as in transformers).
    max_grad_norm: float = 1.0
    # Examples per micro-batch; warmup runs score batch_size * num_warmups sequences.
    batch_size: int = 32
    # Batches of examples of similar length (as transformers' group_by_length): less padding, so
    # faster steps. The order stays random: examples are sorted within groups of 50 batches and
    # the batches shuffled. It can change what is learnt, not only how fast: measure it (README).
    group_by_length: bool = False
    # Micro-batches whose gradients are averaged into one optimizer step.
    gradient_accumulation_steps: int = 1
    # Passes over the training data (fractions allowed). 0, with max_steps 0, trains nothing: the
    # starting model is evaluated as it is, the zero-shot row of a comparison.
    epochs: float = 1.0
    # Optimizer steps; 0 = derive from epochs.
    max_steps: int = 0
    # A time budget: stop at the end of the optimizer step that reaches this many seconds of
    # training (summed over resumes; evaluation and checkpoints not counted); 0 = none. The
    # learning-rate schedule is still planned for `epochs`/`max_steps`, so a run the budget stops
    # ends before its learning rate has decayed to 0, unless `lr_decay_by_time`. Stopped runs are
    # evaluated as usual.
    max_train_seconds: float = 0.0
    # With a time budget: also cap the learning rate at peak x (time left / budget), so it reaches
    # 0 when the budget runs out, as a planned schedule does at its last step. No effect without one.
    lr_decay_by_time: bool = False
    # Evaluate on dev and save `best`/`last` every N optimizer steps (0 = once per epoch).
    eval_every: int = 0
    # The dev metric that picks `best`, as transformers' TrainingArguments: any metric the task reports (`wer`,
    # `exact_match`, `chrf`, `bleu`, `rougeL`, `accuracy`, ...); null = the task's own (wer, chrf, rougeL, accuracy).
    metric_for_best_model: Optional[str] = None
    # Whether a larger metric_for_best_model is better; null = from the metric (error rates lower, the rest higher).
    greater_is_better: Optional[bool] = None
    # Stop once this many dev evaluations in a row did not improve on the best (transformers'
    # EarlyStoppingCallback); 0 = train every planned step. The final evaluation is the best's as ever.
    early_stopping_patience: int = 0
    # Also keep a resumable checkpoint at these optimizer steps (`checkpoints/step-N`): a warmup
    # run can start from one (warmup.sft_warm_start_from) instead of repeating its SFT warm start.
    save_checkpoints_at: list[int] = field(default_factory=list)
    # Stop after this optimizer step (0 = never), keeping its checkpoint (`checkpoints/step-N`) and skipping the
    # final evaluation; the learning-rate schedule is still the whole run's, so the checkpoint is the one the whole
    # run keeps at that step (`warmgen compare` rebuilds a missing warm start this way). Continue with --resume.
    stop_after_step: int = 0
    # Also save `last` every N optimizer steps between evaluations (0 = at evaluations only): a run
    # stopped unannounced (a machine taken back) resumes with fewer steps lost. Changes nothing trained.
    save_every: int = 0
    # Write the training statistics (metrics.jsonl, the trackers) every N optimizer steps; every step's
    # gradient norm is in each row (grad_norms).
    log_every: int = 10
    # A step with a NaN/inf loss or gradient is skipped; this many in a row stop the run (fp16
    # overflows that halve the loss scale are skipped too, but not counted here).
    max_bad_steps: int = 10
    # Experiment trackers that also get every logged value: tensorboard (in output_dir/runs),
    # wandb, trackio, mlflow, comet_ml, aim, clearml, dvclive, swanlab (Accelerate's trackers).
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]] = \
        field(default_factory=list)
    # Write a table of sampled warmups to samples.jsonl every N steps (0 = never).
    samples_every: int = 100
    # `bf16`: training forward passes (sampling and scoring) under bfloat16 autocast; weights,
    # gradients and optimizer state stay float32, log-probabilities are summed in float32.
    # `fp16`: the same under float16 autocast (GPUs without bf16), with dynamic loss scaling; a
    # step whose gradient overflows is skipped and the scale halved. Needs model.dtype float32.
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    # Recompute activations during backward instead of keeping them: less memory, more time.
    gradient_checkpointing: bool = False


@dataclass
class DecodeConfig(_Checked):
    """Inference: warmup first (greedy or sampled), then the target (greedy or beam).

    Targets are cut at `data.max_target_length` tokens; warmups at `warmup.max_warmup_length`.
    """

    # The warmup at inference: greedy, or sampled with the warmup section's temperature/top_k/top_p.
    warmup_strategy: Literal["greedy", "sample"] = "greedy"
    # Beam search for the target (1 = greedy).
    num_beams: int = 1
    # Examples decoded at once.
    batch_size: int = 64
    # With learnt warmups, every evaluation also decodes the targets after an empty warmup, scored as
    # empty_warmup/<metric>: does the model use its warmup at all? (Not in inference_seconds.)
    empty_warmup_scores: bool = True


@dataclass
class WarmupConfig(_Checked):
    """Everything one run needs; saved as `config.yaml` in the run directory.

    Sections can be given as their dataclass or as a dict of fields:
    `WarmupConfig(method="sft", model={"name": "t5-mini"}, train={"epochs": 2})`.
    """

    # `warmup`: Warmup Generations; `sft`: the target alone, with everything else the same;
    # `pause`: pause tokens, the target after `pause.num_tokens` learnt `<pause>` tokens (no loss on them).
    method: Literal["sft", "warmup", "pause"] = "warmup"
    # Model initialisation, data order and warmup sampling.
    seed: int = 0
    # The run folder: config, logs, checkpoints, results (docs/commands.md).
    output_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    warmup: WarmupOptions = field(default_factory=WarmupOptions)
    pause: PauseConfig = field(default_factory=PauseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    # Folder that relative data paths start from: set to the YAML file's folder when loading one,
    # and kept in saved configs so a checkpoint finds its data from anywhere.
    config_dir: str = "."

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "warmup": WarmupOptions,
    "pause": PauseConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}
TOP_LEVEL = ("method", "seed", "output_dir", "config_dir")
SECTION_NAMES = {cls: name for name, cls in SECTIONS.items()}
