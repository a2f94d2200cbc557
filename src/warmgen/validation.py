"""Checks across a config's fields, which a field's type cannot express; each failure is one
`ConfigError` line that names the fields and what to set."""

from __future__ import annotations

from .errors import ConfigError
from .methods import learns_warmups


def validate(config) -> None:
    """Cross-field checks that a type cannot express."""
    w, t, d = config.warmup, config.train, config.data
    checks = _warmup_checks(config) + [
        (config.output_dir.strip() != "", "output_dir is empty: name the folder the run is written to"),
        (config.seed >= 0, "seed must be >= 0"),
        (config.model.vocab_size >= 1, "model.vocab_size must be at least 1"),
        (config.model.lora_alpha > 0, "model.lora_alpha must be > 0"),
        (0 <= config.model.lora_dropout < 1, "model.lora_dropout must be in [0, 1)"),
        (min(d.max_train_examples, d.max_dev_examples, d.max_test_examples) >= 0,
         "data.max_train_examples, max_dev_examples and max_test_examples must be >= 0 (0 = all)"),
        (min(d.max_source_length, d.max_target_length) >= 1, "data.max_source_length and data.max_target_length must be at least 1"),
        (min(d.g2p_dev_size, d.g2p_test_size, d.dev_size, d.g2p_split_seed) >= 0,
         "data.g2p_dev_size, g2p_test_size, g2p_split_seed and dev_size must be >= 0"),
        (t.max_grad_norm >= 0, "train.max_grad_norm must be >= 0 (0 = no clipping)"),
        (t.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (0 <= t.adam_beta1 < 1 and 0 <= t.adam_beta2 < 1, "train.adam_beta1 and train.adam_beta2 must be in [0, 1)"),
        (t.lr_warmup_steps >= 0, "train.lr_warmup_steps must be >= 0"),
        (t.epochs >= 0 and t.max_steps >= 0, "train.epochs and train.max_steps must be >= 0"),
        (t.eval_every >= 0, "train.eval_every must be >= 0 (0 = once per epoch)"),
        (t.save_every >= 0, "train.save_every must be >= 0 (0 = at evaluations only)"),
        (t.log_every >= 1, "train.log_every must be at least 1"),
        (t.early_stopping_patience >= 0, "train.early_stopping_patience must be >= 0 (0: never stop early)"),
        (t.samples_every >= 0, "train.samples_every must be >= 0 (0 = never)"),
        (w.sft_warm_start_steps >= 0, "warmup.sft_warm_start_steps must be >= 0"),
        (config.pause.num_tokens >= 1, "pause.num_tokens must be at least 1"),
        (not w.sft_warm_start_from or (learns_warmups(config) and w.sft_warm_start_steps > 0),
         "warmup.sft_warm_start_from needs method: warmup and warmup.sft_warm_start_steps > 0 (the step it starts from)"),
        (all(n >= 1 for n in t.save_checkpoints_at), "train.save_checkpoints_at lists optimizer steps, each at least 1"),
        (t.stop_after_step >= 0, "train.stop_after_step must be >= 0 (0: train every planned step)"),
        (config.decode.batch_size >= 1, "decode.batch_size must be at least 1"),
        (t.batch_size >= 1, "train.batch_size must be at least 1"),
        (t.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps must be at least 1"),
        (t.learning_rate > 0, "train.learning_rate must be > 0"),
        (t.max_train_seconds >= 0, "train.max_train_seconds must be >= 0 (0 = no time budget)"),
        (t.max_bad_steps >= 1, "train.max_bad_steps must be at least 1"),
        (t.mixed_precision != "fp16" or config.model.dtype == "float32", f"train.mixed_precision fp16 keeps float32 weights and "
         f"scales their gradients; model.dtype {config.model.dtype} weights cannot be: set model.dtype float32"),
        (config.decode.num_beams >= 1, "decode.num_beams must be at least 1"),
        (config.model.lora_rank >= 0, "model.lora_rank must be >= 0 (0 = full fine-tuning)"),
        (config.model.prompt_template.count("{source}") == 1,
         f"model.prompt_template {config.model.prompt_template!r} must contain {{source}} once: it marks where the input goes"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _warmup_checks(config) -> list[tuple[bool, str]]:
    """The warmup section's checks (with the method's)."""
    w = config.warmup
    return [
        (w.num_warmups >= 1, "warmup.num_warmups must be at least 1"),
        (w.objective not in ("rloo", "latro") or w.num_warmups >= 2,
         f"warmup.objective {w.objective} needs warmup.num_warmups >= 2 (the baseline leaves one out)"),
        (w.kl_coef is None or w.kl_coef >= 0, "warmup.kl_coef must be >= 0"),
        (w.reward == "logp" or w.objective in ("rloo", "latro"), f"warmup.reward gain changes only the baseline of rloo and latro; "
         f"{w.objective} compares an example's warmups with each other, where subtracting log P(y|x) changes nothing: to weigh "
         "them against no warmup, set warmup.no_warmup_candidate true"),
        (w.entropy_coef >= 0, "warmup.entropy_coef must be >= 0 (0 = off)"),
        (0 <= w.posterior_warmups < w.num_warmups, "warmup.posterior_warmups must be from 0 to warmup.num_warmups - 1: "
         "the others are sampled from the model, which importance weighting needs"),
        (not w.posterior_warmups or w.objective in ("marginal", "best_of_k"), f"warmup.posterior_warmups proposes warmups the "
         f"model did not sample, which {w.objective}'s on-policy advantages cannot take: use marginal (importance-weighted) or "
         "best_of_k"),
        (not w.posterior_warmups or not (w.no_warmup_candidate or w.keep_best_warmup or w.first_draws or w.fixed_warmup),
         "warmup.posterior_warmups weighs candidates by the samplers that drew them: it cannot be combined with "
         "no_warmup_candidate, keep_best_warmup, first_draws or fixed_warmup"),
        (not w.draft_from or (learns_warmups(config) and w.fixed_warmup is None), "warmup.draft_from gives every example the "
         "drafter's answer as its warmup: it needs method: warmup and no warmup.fixed_warmup"),
        (w.cut_off != "penalty" or w.objective in ("rloo", "latro"), f"warmup.cut_off penalty replaces a reward in rloo's and "
         f"latro's advantages; {w.objective} has none: use mask or keep"),
        (w.answer_loss_weight is None or w.answer_loss_weight >= 0, "warmup.answer_loss_weight must be >= 0"),
        (w.answer_loss_weight is None or w.objective in ("rloo", "latro"), "warmup.answer_loss_weight weighs the answer term "
         "of rloo and latro; marginal and best_of_k train the answer as their objective says: set it null"),
        (not learns_warmups(config) or w.objective != "latro" or w.answer_loss_weight or (w.warmup_loss_weight > 0 and w.fixed_warmup is None),
         "warmup.objective latro with warmup.answer_loss_weight 0 (its default) learns only through the warmups' advantages: "
         "it needs warmup.warmup_loss_weight > 0 and sampled warmups (no warmup.fixed_warmup)"),
        (not w.no_warmup_candidate or w.num_warmups >= 2, "warmup.no_warmup_candidate needs warmup.num_warmups >= 2"),
        (w.max_warmup_length >= 1, "warmup.max_warmup_length must be at least 1"),
        (0 <= w.min_warmup_length <= w.max_warmup_length, "warmup.min_warmup_length must be between 0 and warmup.max_warmup_length"),
        (w.temperature > 0, "warmup.temperature must be > 0"),
        (0 < w.top_p <= 1, "warmup.top_p must be in (0, 1]"),
        (w.top_k >= 0, "warmup.top_k must be >= 0 (0 = off)"),
        (w.warmup_loss_weight >= 0, "warmup.warmup_loss_weight must be >= 0"),
        (w.first_draws == 0 or 2 <= w.first_draws < w.num_warmups,
         "warmup.first_draws must be 0 (off) or from 2 to warmup.num_warmups - 1: the first draws must be able to disagree, "
         "and the rest must exist"),
        (config.model.dropout is None or 0 <= config.model.dropout < 1, "model.dropout must be in [0, 1), or null for the model's own"),
        (w.fresh_warmups >= 0, "warmup.fresh_warmups must be >= 0"),
        (w.refresh_every >= 1, "warmup.refresh_every must be at least 1 (1 = fresh samples at every visit)"),
        (w.target_reward is None or w.target_reward <= 0,
         "warmup.target_reward is a mean log-probability per target token, so it must be <= 0 (e.g. -0.1), or null for off"),
        (not (w.keep_best_warmup and w.no_warmup_candidate),
         "warmup.keep_best_warmup and warmup.no_warmup_candidate cannot be combined; turn one off"),
        (w.fixed_warmup is None or not (w.keep_best_warmup or w.no_warmup_candidate),
         "warmup.fixed_warmup is the only candidate: turn off warmup.keep_best_warmup and warmup.no_warmup_candidate"),
    ]
