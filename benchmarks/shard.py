"""Sharded ingest: 1 process x 1 thread against 2 processes x 1 thread (torchrun) and 1 process x 2 threads.

Every arm runs the real CLI (`python -m index.ingest`, or the same under `torch.distributed.run`) on the
same folder into a fresh index, pinned with `taskset` to the same cores, so only the split of the work
differs. The folder is the first N Cranfield abstracts written as .txt files (or, with `--synthetic`,
generated text, for a smoke run without the data). Reported: wall time of the whole command (start-up and
model load included), the ingest's own embed time, passages per second of embedding, and the ratio
against the 1 x 1 baseline measured in the same run. Each arm's index is checked to hold the same passages.

    python benchmarks/shard.py --model default --n 200 --cpus 0,1          # the real measurement
    python benchmarks/shard.py --model tiny --synthetic --n 40 --cpus 1    # smoke check on one core
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRANFIELD = ROOT.parent / "shared" / "data" / "eval" / "cranfield" / "corpus.jsonl"


def write_docs(folder: Path, n: int, synthetic: bool) -> None:
    folder.mkdir(parents=True)
    if synthetic:
        for i in range(n):
            body = " ".join(f"sentence {j} of document {i} about flow over a wing at station {i * j}." for j in range(12))
            (folder / f"doc-{i:04d}.txt").write_text(body)
        return
    with CRANFIELD.open() as fh:
        for i, line in enumerate(fh):
            if i >= n:
                break
            row = json.loads(line)
            (folder / f"cranfield-{row['_id']}.txt").write_text(f"{row.get('title', '')}\n\n{row['text']}")


def run_arm(name: str, procs: int, threads: int, cpus: str, docs: Path, index: Path, model: str,
            batch_size: int) -> dict:
    cli = ["-m", "index.ingest", str(docs), "--index", str(index), "--model", model, "--json",
           "--batch-size", str(batch_size)]
    if procs == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cli]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run(["taskset", "-c", cpus, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    embed = report["timings"]["embed"]
    return {"arm": name, "wall_s": wall, "embed_s": embed, "passages": report["chunks_added"],
            "passages_per_s": report["chunks_added"] / embed if embed else float("inf")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=200, help="documents")
    parser.add_argument("--cpus", default="0,1", help="cores every arm is pinned to (taskset -c)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--synthetic", action="store_true", help="generated text instead of Cranfield")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
        docs = Path(tmp) / "docs"
        write_docs(docs, args.n, args.synthetic)
        arms = [("1 proc x 1 thread", 1, 1), ("2 procs x 1 thread", 2, 1), ("1 proc x 2 threads", 1, 2)]
        rows = [run_arm(name, p, t, args.cpus, docs, Path(tmp) / f"index-{i}", args.model, args.batch_size)
                for i, (name, p, t) in enumerate(arms)]
    if len({r["passages"] for r in rows}) != 1:
        raise SystemExit(f"the arms stored different numbers of passages: {[r['passages'] for r in rows]}")
    base = rows[0]
    print(f"model {args.model}, {args.n} documents, {base['passages']} passages, cores {args.cpus}")
    print(f"{'arm':<20} {'wall s':>8} {'embed s':>8} {'passages/s':>11} {'embed speed-up':>15}")
    for r in rows:
        print(f"{r['arm']:<20} {r['wall_s']:>8.1f} {r['embed_s']:>8.1f} {r['passages_per_s']:>11.1f} "
              f"{base['embed_s'] / r['embed_s'] if r['embed_s'] else float('inf'):>14.2f}x")


if __name__ == "__main__":
    main()
