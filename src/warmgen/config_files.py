"""Configs from YAML files and the command line: reading, `--section.key value` overrides,
comparing a saved config with a new one, and finding the data files a config names."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import SECTIONS, TOP_LEVEL, WarmupConfig
from .errors import ConfigError
from .typecheck import check_type, field_types, shown
from .validation import validate


def _valid_keys() -> list[str]:
    keys = list(TOP_LEVEL)
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


# TRL's and transformers' names for what warmgen calls otherwise (a sampled warmup is TRL's completion).
FAMILIAR_NAMES = {
    "lr": "train.learning_rate", "num_train_epochs": "train.epochs", "per_device_train_batch_size": "train.batch_size",
    "per_device_eval_batch_size": "decode.batch_size", "logging_steps": "train.log_every", "eval_steps": "train.eval_every",
    "save_steps": "train.save_every", "warmup_steps": "train.lr_warmup_steps", "num_generations": "warmup.num_warmups",
    "max_completion_length": "warmup.max_warmup_length", "max_prompt_length": "data.max_source_length",
    "beta": "warmup.kl_coef", "dataset_name": "data.dataset", "model_name_or_path": "model.name",
    "bf16": "train.mixed_precision bf16", "fp16": "train.mixed_precision fp16", "num_beams": "decode.num_beams",
}


def _unknown_key(dotted_key: str) -> str:
    """The error for a key no config has: its warmgen name where TRL or transformers call it so, else the closest
    valid ones, else where the list is."""
    familiar = FAMILIAR_NAMES.get(dotted_key.split(".")[-1])
    if familiar is not None:
        return f"unknown config key '{dotted_key}': did you mean '{familiar}'? (warmgen's name for TRL's or transformers')"
    keys = _valid_keys()
    close = difflib.get_close_matches(dotted_key, keys, n=2) or difflib.get_close_matches(
        dotted_key, [k.split(".")[-1] for k in keys], n=1)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "valid keys: warmgen train --help"
    return f"unknown config key '{dotted_key}': {hint}"


def set_value(config: WarmupConfig, dotted_key: str, value: Any) -> None:
    """Set one field, `section.name` or a unique bare `name`, checking its type."""
    parts = dotted_key.split(".")
    if len(parts) == 1 and parts[0] not in TOP_LEVEL:
        owners = [s for s, cls in SECTIONS.items() if parts[0] in field_types(cls)]
        if len(owners) == 1:
            parts = [owners[0], parts[0]]
        elif len(owners) > 1:
            raise ConfigError(
                f"'{dotted_key}' is ambiguous: use one of {', '.join(f'{o}.{parts[0]}' for o in owners)}"
            )
    if len(parts) == 1 and parts[0] in TOP_LEVEL:
        types_ = field_types(WarmupConfig)
        setattr(config, parts[0], check_type(value, types_[parts[0]], parts[0]))
        return
    if len(parts) == 2 and parts[0] in SECTIONS:
        section = getattr(config, parts[0])
        types_ = field_types(SECTIONS[parts[0]])
        if parts[1] in types_:
            setattr(section, parts[1], check_type(value, types_[parts[1]], ".".join(parts)))
            return
    raise ConfigError(_unknown_key(dotted_key))


def apply_mapping(config: WarmupConfig, mapping: dict[str, Any], origin: str) -> None:
    """Apply a nested YAML mapping; errors name `origin` (the file) and the key."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{origin}: expected a mapping of config sections, got {type(mapping).__name__}")
    for key, value in mapping.items():
        try:
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"{key}: expected a mapping, got {shown(value)}")
                for sub_key, sub_value in value.items():
                    set_value(config, f"{key}.{sub_key}", sub_value)
            else:
                set_value(config, str(key), value)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from None


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """`['--warmup.num_warmups', '8', '--method=sft']` -> [('warmup.num_warmups', 8), ('method', 'sft')].

    Values are read as YAML scalars, so `8` is an int, `true` a bool and `[a, b]` a list.
    """
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}': overrides look like --section.key value")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override '{arg}' has no value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        try:
            value = _within_bounds(yaml.safe_load(raw), f"command line: --{key}")
        except yaml.YAMLError:
            value = raw
        if value is None and raw.strip() not in ("null", "~", "None"):
            value = raw
        pairs.append((key, value))
    return pairs


# More values than any config holds: YAML aliases can repeat a list inside itself so that a file of a few
# lines stands for billions of values, which formatting or copying it would then spell out.
MAX_VALUES = 100_000


def _within_bounds(value: Any, origin: str) -> Any:
    """`value` as read, after counting what it stands for (each alias counted again) up to MAX_VALUES."""
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{origin}: stands for more than {MAX_VALUES:,} values (YAML aliases that repeat each "
                              "other): write the values out")
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a missing or unreadable file, invalid YAML and keys given twice are ConfigErrors naming the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it: {err}") from None
    try:
        return _within_bounds(yaml.load(text, Loader=_UniqueKeyLoader), str(path))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{line}: not valid YAML: {' '.join(str(problem).split())}") from None


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[tuple[str, Any]] = ()) -> WarmupConfig:
    """Defaults, then the YAML file, then overrides (later wins); validated."""
    config = WarmupConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        mapping = read_yaml(path) or {}
        apply_mapping(config, mapping, str(path))
        if "config_dir" not in mapping:
            config.config_dir = str(path.resolve().parent)
    for key, value in overrides:
        try:
            set_value(config, key, value)
        except ConfigError as err:
            raise ConfigError(f"command line: {err}") from None
    validate(config)
    return config


# Fields that say where a run is kept, how it is logged or where it pauses, or what the person running it trusts,
# not what it computes.
BOOKKEEPING = ("output_dir", "config_dir", "train.log_every", "train.samples_every", "train.max_bad_steps", "train.save_checkpoints_at",
               "train.stop_after_step", "train.save_every", "train.report_to", "decode.batch_size", "model.trust_remote_code",
               "model.allow_bin_weights")


# Fields that name a file: the same file spelt another way (relative, absolute) is no difference.
PATHS = ("warmup.sft_warm_start_from", "warmup.draft_from")


def differences(old: dict, new: dict, ignore: tuple[str, ...] = BOOKKEEPING) -> list[str]:
    """Where two configs (as dicts) differ, as "key: old there, new now"; a field `old` lacks (an older warmgen) is not compared,
    nor, between two SFT configs, the warmup section that SFT never reads (nor pause, but between pause runs)."""
    if old.get("method") == new.get("method") == "sft":
        ignore = ignore + ("warmup",)
    if not old.get("method") == new.get("method") == "pause":
        ignore = ignore + ("pause",)  # read by pause runs only
    found = []
    for key, value in new.items():
        if key not in old:
            continue
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        for sub_key, sub_value in pairs:
            name = key if sub_key is None else f"{key}.{sub_key}"
            if name in ignore or key in ignore or (sub_key is not None and sub_key not in old[key]):
                continue
            before = old[key] if sub_key is None else old[key][sub_key]
            if before != sub_value and not (name in PATHS and before and sub_value and Path(before).resolve() == Path(sub_value).resolve()):
                found.append(f"{name}: {shown(before)} there, {shown(sub_value)} now")
    return found


def data_root() -> Path:
    return Path(os.environ.get("WARMGEN_DATA_ROOT", "../shared/data"))


def resolve_path(config: WarmupConfig, path: str) -> Path:
    """A data path from a config: absolute, else next to the config file, else under the data root.

    A path found in neither place is an error that shows the path as written and where it was looked for.
    """
    from .errors import DataError

    candidate = Path(path).expanduser()
    places = [candidate] if candidate.is_absolute() else [Path(config.config_dir) / candidate, data_root() / candidate]
    for place in places:
        # A pair of parallel files is named by its stem: `train` for train.src + train.tgt.
        if place.exists() or place.with_name(place.name + config.data.source_suffix).exists():
            return place
    raise DataError(f"'{path}': file not found (looked for {' and '.join(str(p) for p in places)})")
