"""Translation between two languages from line-aligned files.

File paths are templates: `{lang}` becomes each side's code and `{flores}` its FLORES-200 code,
so `translation/deu-eng/train.{lang}` reads `train.deu` and `train.eng`, and
`flores200/devtest/{flores}.devtest` reads `deu_Latn.devtest` and `eng_Latn.devtest`.
BLEU uses sacrebleu's `zh` tokenizer for Chinese targets and `13a` otherwise; chrF++ is
CHRF(word_order=2); COMET when `data.comet_model` names a local checkpoint.
"""

from __future__ import annotations

from ..config import WarmupConfig
from ..config_files import resolve_path
from ..errors import ConfigError
from ..records import read_parallel
from . import Task, read_files, shuffled, text_rows

LANGUAGES = {  # code: (name, FLORES-200 code)
    "eng": ("English", "eng_Latn"),
    "deu": ("German", "deu_Latn"),
    "fra": ("French", "fra_Latn"),
    "rus": ("Russian", "rus_Cyrl"),
    "zho": ("Chinese", "zho_Hans"),
}


def _side(template: str, lang: str) -> str:
    if "{flores}" in template and lang not in LANGUAGES:
        raise ConfigError(f"no FLORES-200 code known for '{lang}' (known: {', '.join(LANGUAGES)}); write the file name instead of {{flores}}")
    return template.replace("{lang}", lang).replace("{flores}", LANGUAGES.get(lang, ("", ""))[1])


def load(config: WarmupConfig, given: dict) -> Task:
    data = config.data
    src, tgt = data.source_lang, data.target_lang
    if not src or not tgt or src == tgt:
        raise ConfigError("data.task translation needs data.source_lang and data.target_lang, e.g. deu and eng")
    for name in ("train_file", "dev_file", "test_file"):
        path = getattr(data, name)
        if path and "{lang}" not in path and "{flores}" not in path:
            raise ConfigError(f"data.{name} '{path}' needs {{lang}} or {{flores}} where the language code goes")
        if path:
            _side(path, src), _side(path, tgt)  # unknown FLORES codes fail before any file is read

    def read(template: str):
        return read_parallel(resolve_path(config, _side(template, src)), resolve_path(config, _side(template, tgt)))

    splits = read_files(config, read, given, text_rows(config))
    splits["train"] = shuffled(splits["train"], config.seed)
    prefix = data.source_prefix.replace("{source_name}", LANGUAGES.get(src, (src,))[0]).replace(
        "{target_name}", LANGUAGES.get(tgt, (tgt,))[0])
    for rows in splits.values():
        for example in rows:
            example.source = prefix + example.source
            example.extra["direction"] = f"{src}-{tgt}"
    metrics = ["bleu", "chrf"] + (["comet"] if data.comet_model else [])
    skipped = {} if data.comet_model else {"comet": "set data.comet_model to a local COMET checkpoint (pip install unbabel-comet)"}
    return Task("translation", splits, metrics=metrics, primary_metric="chrf", greater_is_better=True,
                metric_options={"bleu_tokenize": "zh" if tgt == "zho" else "13a", "comet_model": data.comet_model},
                skipped=skipped)
