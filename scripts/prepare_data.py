"""Build the data files configs/paper/ reads, from the public datasets on the Hugging Face hub.

    python scripts/prepare_data.py --out "$WARMGEN_DATA_ROOT"                 # everything
    python scripts/prepare_data.py --out data --only xsum logiqa2 --max-train 50000

Writes, in the formats the tasks read (docs/tasks-and-models.md):

    xsum/{train,dev,test}.jsonl            EdinburghNLP/xsum: {id, document, summary}
    logiqa2/{train,dev,test}.jsonl         baber/logiqa2 (config logiqa2): {id, answer, text, question, options, type}
    flores200/devtest/<code>.devtest       facebook/flores (one config per language): the devtest sentences, one per line
    translation/<xxx>-eng/train.{xxx,eng}  WMT training pairs (wmt/wmt19 for deu, rus, zho; wmt/wmt14 for fra), line-aligned
    translation/<xxx>-eng/dev.{xxx,eng}    the same release's validation newstest

The hub's copies are not the paper's (its exact training data is not public). `--max-train N` keeps
the first N training rows (WMT de-en alone has millions of pairs). A file that exists is kept and
reported; `--overwrite` replaces it. Each file is written to a temporary name and renamed, so an
interrupted run leaves no half-written file. Needs `datasets` and a reachable hub (HF_ENDPOINT,
HF_TOKEN as usual; FLORES may need its licence accepted on the hub first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

FLORES = {"eng": "eng_Latn", "deu": "deu_Latn", "fra": "fra_Latn", "rus": "rus_Cyrl", "zho": "zho_Hans"}
WMT = {"deu": ("wmt/wmt19", "de-en", "de"), "fra": ("wmt/wmt14", "fr-en", "fr"), "rus": ("wmt/wmt19", "ru-en", "ru"),
       "zho": ("wmt/wmt19", "zh-en", "zh")}
SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # our file name: the hub's split
XSUM_FIELDS = ("id", "document", "summary")
LOGIQA_FIELDS = ("id", "answer", "text", "question", "options", "type")


class HubError(Exception):
    """A dataset that could not be loaded or does not have the fields expected."""


def load(name: str, config: str | None, split: str, limit: int = 0):
    from datasets import load_dataset

    try:
        rows = load_dataset(name, config, split=split)
    except Exception as err:  # offline, gated, renamed: the datasets library raises many kinds
        raise HubError(f"{name}{f' ({config})' if config else ''} split {split}: cannot load it from the hub: "
                       f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return rows.select(range(min(limit, len(rows)))) if limit else rows


def fields(rows, name: str, wanted) -> None:
    missing = [field for field in wanted if field not in rows.column_names]
    if missing:
        raise HubError(f"{name}: no field {', '.join(missing)} (it has {', '.join(rows.column_names)}); its schema changed")


def write(path: Path, lines, overwrite: bool) -> bool:
    """`lines` (strings without newlines) to `path`, atomically; False where `path` exists and is kept."""
    if path.exists() and not overwrite:
        print(f"kept {path} (exists; --overwrite replaces it)")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        count = 0
        for line in lines:
            out.write(line + "\n")
            count += 1
    os.replace(tmp, path)
    print(f"wrote {path} ({count} lines)")
    return True


def one_line(text: str) -> str:
    """A sentence as one line of a line-aligned file."""
    return " ".join(text.split())


def xsum(out: Path, limit: int, overwrite: bool) -> None:
    for ours, split in SPLITS.items():
        rows = load("EdinburghNLP/xsum", None, split, limit if ours == "train" else 0)
        fields(rows, "EdinburghNLP/xsum", XSUM_FIELDS)
        write(out / "xsum" / f"{ours}.jsonl", (json.dumps({f: r[f] for f in XSUM_FIELDS}, ensure_ascii=False) for r in rows), overwrite)


def logiqa2(out: Path, limit: int, overwrite: bool) -> None:
    for ours, split in SPLITS.items():
        rows = load("baber/logiqa2", "logiqa2", split, limit if ours == "train" else 0)
        fields(rows, "baber/logiqa2", LOGIQA_FIELDS)
        write(out / "logiqa2" / f"{ours}.jsonl", (json.dumps({f: r[f] for f in LOGIQA_FIELDS}, ensure_ascii=False) for r in rows),
              overwrite)


def flores(out: Path, limit: int, overwrite: bool) -> None:
    for code in FLORES.values():
        rows = load("facebook/flores", code, "devtest")
        fields(rows, f"facebook/flores ({code})", ("sentence",))
        write(out / "flores200" / "devtest" / f"{code}.devtest", (one_line(r["sentence"]) for r in rows), overwrite)


def translation(out: Path, limit: int, overwrite: bool) -> None:
    for lang, (name, config, hub_code) in WMT.items():
        for ours, split in (("train", "train"), ("dev", "validation")):
            folder = out / "translation" / f"{lang}-eng"
            sides = [folder / f"{ours}.{lang}", folder / f"{ours}.eng"]
            if not overwrite and any(path.exists() for path in sides):
                if not all(path.exists() for path in sides):  # the other side would come from another run
                    raise HubError(f"{' and '.join(map(str, sides))}: only one side exists; pass --overwrite to write both")
                print(f"kept {sides[0]} and {sides[1]} (exist; --overwrite replaces them)")
                continue
            rows = load(name, config, split, limit if ours == "train" else 0)
            fields(rows, f"{name} ({config})", ("translation",))
            if len(rows) and set(rows[0]["translation"]) != {hub_code, "en"}:
                raise HubError(f"{name} ({config}): translation pairs in {sorted(rows[0]['translation'])}, not {hub_code} and en")
            pairs = [(one_line(r["translation"][hub_code]), one_line(r["translation"]["en"])) for r in rows]
            pairs = [(x, y) for x, y in pairs if x and y]  # a pair with an empty side teaches nothing
            write(sides[0], (x for x, _ in pairs), True)
            write(sides[1], (y for _, y in pairs), True)


BUILDERS = {"xsum": xsum, "logiqa2": logiqa2, "flores": flores, "translation": translation}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the data root the configs read ($WARMGEN_DATA_ROOT)")
    parser.add_argument("--only", nargs="+", choices=list(BUILDERS), default=list(BUILDERS), help="which datasets (default: all)")
    parser.add_argument("--max-train", type=int, default=0, help="keep the first N training rows of each dataset (0 = all)")
    parser.add_argument("--overwrite", action="store_true", help="replace files that exist")
    args = parser.parse_args(argv)
    if args.max_train < 0:
        parser.error("--max-train must be >= 0 (0 = all)")
    try:
        for name in args.only:
            BUILDERS[name](Path(args.out), args.max_train, args.overwrite)
    except HubError as err:
        print(f"prepare_data: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
