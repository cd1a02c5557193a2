"""Data for the embedded default: a sample of every source, hard negatives mined by the MiniLM teacher.

Step 2 of the default's recipe (`scripts/train-default.sh`): takes the weak pairs (`training.weak_pairs`)
and the shared training sets (`training.data build`), samples at most `--per-source` examples of each
weak source, and gives them negatives mined by all-MiniLM-L6-v2 (positive-aware, TopK-PercPos: below
95 % of the positive's score, sampled from ranks 0-30; nv-embed.md §3). MedQuAD keeps the builder's
structural hard negatives (same disease, other question type; same question type, other disease), which
are cheaper than mining its 12k-text pool on a CPU; the classification, clustering and STS files are
sampled and copied (their negatives come from the labels). A file already written is kept (resumable).

    python -m training.default_data --weak runs/default/data/weak --shared runs/default/data/shared \
        --out runs/default/data/mined [--per-source 8000] [--negatives 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from .data import read_jsonl, subset, write_jsonl
from .mine import MiningConfig, mine_examples
from .teacher import MiniLMTeacher

MINED = ["debian", "python_docs", "manpages"]  # weak pairs: no negatives of their own
SAMPLED = ["medquad", "banking77-classification", "banking77-clustering", "sts"]  # negatives from the builder


def prepare(weak: Path, shared: Path, out: Path, per_source: int, negatives: int, seed: int = 0) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    teacher = MiniLMTeacher()
    config = MiningConfig(num_negatives=negatives, range_min=0, range_max=30, margin=0.05,
                          margin_type="relative", sampling="random", seed=seed)
    report = {}
    for name in MINED:
        if (out / f"{name}.jsonl").is_file():
            continue
        examples = subset(read_jsonl(weak / f"{name}.jsonl"), per_source, seed)
        mined, stats = mine_examples(teacher, examples, config, batch_size=64, max_length=256)
        write_jsonl(mined, out / f"{name}.jsonl")
        report[name] = stats
        print(f"{name}: {json.dumps(stats)}", file=sys.stderr)
    for name in SAMPLED:
        examples = subset(read_jsonl(shared / f"{name}.jsonl"), per_source, seed)
        random.Random(seed).shuffle(examples)
        write_jsonl(examples, out / f"{name}.jsonl")
        report[name] = {"examples": len(examples)}
    (out / "REPORT.json").write_text(json.dumps({"per_source": per_source, "negatives": negatives,
                                                 "teacher": teacher.name, "sources": report}, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weak", type=Path, required=True)
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-source", type=int, default=8000)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prepare(args.weak, args.shared, args.out, args.per_source, args.negatives, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
