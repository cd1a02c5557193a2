"""The learning curve of a (long, resumable) training run: dev nDCG@10 per checkpoint, kept as it grows.

A long run keeps only its newest `keep_checkpoints` checkpoints, so its curve has to be measured while it
runs and saved where it survives. Each call evaluates what of RUN_DIR has not been evaluated yet (by run,
stage and step, read back from `--out`) and appends one JSON line per point:

- the first stage's starting model (step 0: the baseline every later row is compared with);
- every live checkpoint (rebuilt in memory by `training.snapshot`, the run's own model-building code);
  with `--min-gap N` only the newest one at least N steps after the previous point of its stage (run it
  with `--watch SECONDS` beside the training run to get a point every N steps);
- every finished stage (`RUN_DIR/stage1`, `stage2`), and any `--snapshots DIR` written by training.snapshot.

Evaluation is the training-time one (`training.evaluate.evaluate_model` with the run's own `eval` section:
for the long run 40 queries / 400 documents of Cranfield and CISI, max length 256), dense only. Each row
holds stage, step, pairs seen in the stage, training CPU hours (the checkpoint's `elapsed_s`; cumulative
over finished stages too) and nDCG@10 per set; a Markdown table (`--markdown`) is rewritten from all rows
of the run, with the mean nDCG@10 as a ratio to the start row. It pins itself to one core (`--core`,
default 1; core 0 is the training run's) and one thread. Nothing under RUN_DIR is written.

    python benchmarks/learning_curve.py ~/.cache/nvembed-search/runs/long --min-gap 50 [--watch 600]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder.checkpoint import read_config  # noqa: E402
from training import state  # noqa: E402
from training.config import EvalConfig, RunConfig  # noqa: E402
from training.evaluate import evaluate_model  # noqa: E402
from training.modeling import resolve_device, resolve_precision  # noqa: E402
from training.snapshot import SnapshotError, build_snapshot, read_run  # noqa: E402
from training.state import stage_label, stage_order  # noqa: E402
from training.two_stage import reload_stage, stage_start_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "learning-curve.jsonl"


@dataclass
class Point:
    """One point to evaluate: `kind` is start, checkpoint, stage or snapshot."""

    kind: str
    stage: int | str
    step: int
    path: Path | None = None


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_seconds(run_dir: Path, stage: int | str) -> float:
    """Training seconds a finished stage recorded (its model directory's `train_seconds`)."""
    directory = run_dir / stage_label(stage)
    if not (directory / "config.json").is_file():
        return 0.0
    return float(read_config(directory).extra.get("train_seconds", 0.0))


def before_hours(run_dir: Path, config: RunConfig, stage: int | str) -> float:
    """Training hours of the run's stages before `stage` (finished, so their directories say)."""
    earlier = [s for s in config.stages if stage_order(s) < stage_order(stage)]
    return sum(stage_seconds(run_dir, s) for s in earlier) / 3600


def pending(run_dir: Path, config: RunConfig, completed: Sequence[int | str], rows: list[dict[str, Any]],
            min_gap: int, snapshots: Sequence[Path] = (), start: bool = True) -> list[Point]:
    """What of the run is not evaluated yet, oldest first (`start=False`: not the starting model)."""
    done = {(r["stage"], r["step"]) for r in rows}
    last: dict[int | str, int] = {}
    for stage, step in done:
        last[stage] = max(last.get(stage, -10**9), step)
    points = []
    first = config.stages[0]
    if start and (first, 0) not in done:
        points.append(Point("start", first, 0))
        last[first] = max(last.get(first, 0), 0)
    newest: dict[int | str, Point] = {}
    for stage, step, path in state.list_checkpoints(run_dir):
        if (stage, step) in done or step - last.get(stage, -10**9) < min_gap:
            continue
        if min_gap <= 0:
            points.append(Point("checkpoint", stage, step, path))
        else:  # thinned: the newest qualifying one (older ones are the next to be deleted)
            newest[stage] = Point("checkpoint", stage, step, path)
    points += newest.values()
    for stage in config.stages:
        directory = run_dir / stage_label(stage)
        if stage in completed and (directory / "config.json").is_file():
            steps = int(read_config(directory).extra.get("steps", config.stage(stage).steps))
            if (stage, steps) not in done:
                points.append(Point("stage", stage, steps, directory))
    for directory in snapshots:
        info = read_config(directory).extra.get("snapshot")
        if not info:
            raise SnapshotError(f"{directory}: not written by training.snapshot (no snapshot metadata)")
        stage = read_config(directory).extra["stage"]
        if (stage, info["step"]) not in done:
            points.append(Point("snapshot", stage, int(info["step"]), directory))
    return sorted(points, key=lambda p: (stage_order(p.stage), p.step))


def evaluate_point(point: Point, run_dir: Path, config: RunConfig, completed: Sequence[int | str],
                   eval_config: EvalConfig) -> dict[str, Any]:
    """The row of one point: rebuild its model, evaluate it dense on the dev subsets."""
    started = time.perf_counter()
    precision = resolve_precision(config.model, resolve_device("cpu"))
    section = config.stage(point.stage)
    if point.kind == "start":
        model, _ = stage_start_model(config, precision, run_dir, completed, point.stage)
        seconds = 0.0
    elif point.kind == "checkpoint":
        model, meta, _ = build_snapshot(run_dir, point.path)
        seconds = meta["snapshot"]["elapsed_s"]
    else:  # a finished stage or a snapshot directory: loaded as the run reloads a stage
        model = reload_stage(config, precision, point.path)
        seconds = float(model.config.extra.get("train_seconds", 0.0))
    model.eval()
    results = evaluate_model(model, eval_config, precision.context())
    return {
        "run": str(run_dir.resolve()), "stage": point.stage, "step": point.step,
        "pairs_seen": point.step * section.batch_size,
        "stage_train_seconds": round(seconds, 3),
        "cpu_hours": round(before_hours(run_dir, config, point.stage) + seconds / 3600, 6),
        "ndcg@10": {name: round(metrics["ndcg@10"], 4) for name, metrics in results.items()},
        "source": point.kind if point.path is None else f"{point.kind} {point.path.name}",
        "subset": {"max_queries": eval_config.max_queries, "max_docs": eval_config.max_docs,
                   "max_length": eval_config.max_length},
        "eval_seconds": round(time.perf_counter() - started, 1),
        "date": datetime.date.today().isoformat(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per point, the mean nDCG@10 as a ratio to the run's start row."""
    rows = sorted(rows, key=lambda r: (stage_order(r["stage"]), r["step"]))
    sets = list(dict.fromkeys(name for r in rows for name in r["ndcg@10"]))
    start = next((r for r in rows if r["step"] == 0), None)

    def mean(row: dict[str, Any]) -> float:
        values = [row["ndcg@10"][s] for s in sets if s in row["ndcg@10"]]
        return sum(values) / len(values) if values else 0.0
    lines = ["| stage | step | pairs seen | CPU hours | " + " | ".join(f"{s} nDCG@10" for s in sets)
             + " | mean vs start |", "|---|---:|---:|---:|" + "---:|" * len(sets) + "---:|"]
    for r in rows:
        ratio = f"{mean(r) / mean(start):.2f}x" if start is not None and mean(start) > 0 else "–"
        cells = [f"{r['ndcg@10'][s]:.3f}" if s in r["ndcg@10"] else "–" for s in sets]
        lines.append(f"| {stage_label(r['stage'])} | {r['step']} | {r['pairs_seen']} | {r['cpu_hours']:.2f} | "
                     + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def update(run_dir: Path, out: Path, markdown: Path | None = None, beir: Sequence[str] = (), min_gap: int = 0,
           snapshots: Sequence[Path] = (), max_queries: int | None = None, max_docs: int | None = None,
           max_length: int | None = None, start: bool = True) -> list[dict[str, Any]]:
    """Evaluate what is pending, append each row to `out` as soon as it is measured; return the new rows."""
    config, run_data = read_run(run_dir)
    eval_config = replace(config.eval, sts=None, banking77=None, at_stage_end=True)
    if beir:
        eval_config.beir = list(beir)
    for name, value in (("max_queries", max_queries), ("max_docs", max_docs), ("max_length", max_length)):
        if value is not None:
            setattr(eval_config, name, value)
    if not eval_config.beir:
        raise SnapshotError(f"{run_dir}: the run's eval section names no BEIR set; pass --beir DIR [DIR ...]")
    missing = [p for p in eval_config.beir if not Path(p).is_dir()]
    if missing:
        raise SnapshotError(f"dev set {missing[0]} not found (the run's eval paths are relative to where it was "
                            "started); pass --beir DIR [DIR ...]")
    mine = str(run_dir.resolve())
    rows = [r for r in read_rows(out) if r.get("run") == mine]
    completed = run_data.get("completed", [])
    new = []
    tried: set[tuple[str, int | str, int]] = set()
    while True:  # listed afresh after every point: an evaluation outlasts the run's oldest checkpoints
        point = next((p for p in pending(run_dir, config, completed, rows, min_gap, snapshots, start)
                      if (p.kind, p.stage, p.step) not in tried), None)
        if point is None:
            break
        tried.add((point.kind, point.stage, point.step))
        label = f"{stage_label(point.stage)} step {point.step} ({point.kind})"
        print(f"[curve] evaluating {label} ...", file=sys.stderr, flush=True)
        try:
            row = evaluate_point(point, run_dir, config, completed, eval_config)
        except SnapshotError as exc:  # a checkpoint the run deleted meanwhile
            print(f"[curve] skipped {label}: {exc}", file=sys.stderr, flush=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        new.append(row)
        rows.append(row)
    if markdown is not None and rows:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(f"Learning curve of {run_dir.name} (`benchmarks/learning_curve.py`)\n\n" + table(rows)
                            + "\n")
    return new


def pin(core: int) -> None:
    """One core, one thread (the training run has core 0)."""
    if core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON Lines of every point (appended)")
    parser.add_argument("--markdown", type=Path, help="rewrite this Markdown table from the run's rows")
    parser.add_argument("--beir", nargs="+", default=[], help="dev sets (default: the run's eval section)")
    parser.add_argument("--max-queries", type=int)
    parser.add_argument("--max-docs", type=int)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--min-gap", type=int, default=0, help="steps between evaluated checkpoints of a stage")
    parser.add_argument("--snapshots", nargs="+", type=Path, default=[], help="training.snapshot directories")
    parser.add_argument("--watch", type=float, help="keep polling the run every this many seconds")
    parser.add_argument("--core", type=int, default=1, help="CPU core to pin to (-1: leave the affinity)")
    parser.add_argument("--no-start", action="store_true", help="skip the starting model (a cool-down branch "
                                                                 "of scripts/cool-down.sh shares its source run's)")
    args = parser.parse_args(argv)
    pin(args.core)
    try:
        while True:
            update(args.run_dir, args.out, args.markdown, args.beir, args.min_gap, args.snapshots, args.max_queries,
                   args.max_docs, args.max_length, start=not args.no_start)
            mine = str(args.run_dir.resolve())
            print(table([r for r in read_rows(args.out) if r.get("run") == mine]), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
