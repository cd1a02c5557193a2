"""The equal-time comparison of training recipes, as one table: what each arm learned for the same budget.

`scripts/run-arms.sh` trains every arm of `training/configs/arms/` for the same wall time on one pinned
core and evaluates it on the same dev subsets; this reads their output directories and prints, per arm,
the budget actually used, steps, pairs and tokens seen, throughput, and dense nDCG@10 on each dev subset
with the difference to the baseline arm (today's recipe, `a`) measured in the same series.

    python benchmarks/recipe_arms.py runs/arms [--baseline a] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def arm_summary(out: Path) -> dict[str, Any] | None:
    """One arm's figures from its run.json (config, evaluations) and metrics.jsonl (steps); None if unfinished."""
    run_file, metrics_file = out / "run.json", out / "metrics.jsonl"
    if not run_file.is_file() or not metrics_file.is_file():
        return None
    run = json.loads(run_file.read_text())
    evaluation = run.get("evaluations", {}).get("stage1")
    if evaluation is None:
        return None
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "loss" in r and r.get("stage") == 1]
    stage = run["config"]["stage1"]
    seconds = sum(r["step_seconds"] for r in rows if "loss" in r)  # pre-stages (MNTP) spend the budget too
    tokens = sum(r["tokens_per_s"] * r["step_seconds"] for r in rows if "loss" in r)
    return {
        "arm": out.name,
        "minutes": seconds / 60,
        "steps": len(steps),
        "batch": stage["batch_size"],
        "pairs": len(steps) * stage["batch_size"],
        "stages": run["config"]["stages"],
        "pairs_per_s": len(steps) * stage["batch_size"] / seconds if seconds else 0.0,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "first_loss": sum(r["loss"] for r in steps[:5]) / max(1, len(steps[:5])),
        "last_loss": sum(r["loss"] for r in steps[-5:]) / max(1, len(steps[-5:])),
        "ndcg": {name: metrics["ndcg@10"] for name, metrics in evaluation.items() if "ndcg@10" in metrics},
    }


def table(summaries: list[dict[str, Any]], baseline: str) -> str:
    sets = sorted({name for s in summaries for name in s["ndcg"]})
    base = next((s for s in summaries if s["arm"] == baseline), None)
    head = ["arm", "minutes", "steps x batch", "pairs/s", "tokens/s", "loss first→last"]
    head += [f"{name} nDCG@10 (Δ vs {baseline})" for name in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s["arm"], f"{s['minutes']:.1f}", f"{s['steps']} x {s['batch']}", f"{s['pairs_per_s']:.2f}",
                 f"{s['tokens_per_s']:.0f}", f"{s['first_loss']:.2f}→{s['last_loss']:.2f}"]
        for name in sets:
            value = s["ndcg"].get(name)
            delta = "" if base is None or value is None or name not in base["ndcg"] else \
                f" ({value - base['ndcg'][name]:+.3f})"
            cells.append("–" if value is None else f"{value:.3f}{delta}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="directory holding one output directory per arm")
    parser.add_argument("--baseline", default="a")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    summaries = [s for d in sorted(args.root.iterdir()) if d.is_dir() and (s := arm_summary(d)) is not None]
    if not summaries:
        print(f"no finished arm under {args.root}", file=sys.stderr)
        return 1
    print(json.dumps(summaries, indent=2) if args.json else table(summaries, args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
