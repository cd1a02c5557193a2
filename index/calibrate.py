"""`python -m index.calibrate --model M --beir DEV [DEV ...]`: measure a model's best fusion, store it with it.

How much hybrid search should trust the dense list depends on how good the encoder is, so it is measured,
not guessed. For each dev set (BEIR layout, every judged query) the dense and keyword candidate lists are
built once through the real index and cached (`rankings.py`); then every fusion setting of `grid()`
(weighted RRF, min-max and z-score convex fusion, candidate depths) is scored on the cached lists in
seconds, exactly as `run_search` fuses them and as `benchmarks/retrieval_modes.py` scores them (k = 100
passages, a document ranked by its best passage, nDCG@10).

The setting chosen maximises the worst margin over the sets of hybrid against the better single mode,
`min_s(hybrid_s - max(dense_s, keyword_s))`, ties broken by mean nDCG@10, among the fusion methods that
transfer: with two sets or more, each set is used alone to choose a method's setting that is then checked
on the others (choose on Cranfield, check on CISI, and the reverse), and a method whose setting so chosen
falls below the better single mode anywhere is not used (unless no method transfers). Data nobody tuned to
is what a user brings, so a method whose best weights move from set to set is the riskier one. The result
is written as a `search` block with the model (`fusion.py` reads it at search time):
`encoder/default/default.json` for `--model default`, the `nvembed_search.search` entry of `config.json` for
a model directory. `--dry-run` writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fusion import _MODEL_CACHE, FusionConfig, fuse
from .rankings import DevRankings, load_or_build

BENCH_K = 100  # passages a benchmark search asks for (benchmarks/retrieval_modes.py)


def grid(depths: Sequence[int] = (100, 200, 300)) -> list[FusionConfig]:
    """Every setting tried: convex weights in steps of 0.05, RRF weight ratios and constants, depths."""
    out: list[FusionConfig] = []
    alphas = [round(a * 0.05, 2) for a in range(21)]
    for depth in depths:
        for method in ("minmax", "zscore"):
            out += [FusionConfig(method, a, round(1 - a, 2), 60, depth) for a in alphas]
        for k in (10, 30, 60, 100):
            out += [FusionConfig("rrf", a, round(1 - a, 2), k, depth) for a in alphas[1:]]
    return out


def ranked_docs(passages: Iterable[tuple[int, float]], doc_of: dict[int, str], limit: int) -> list[str]:
    """Document ids in order of their best passage, from the first `limit` passages."""
    seen: dict[str, None] = {}
    for n, (chunk_id, _) in enumerate(passages):
        if n >= limit:
            break
        doc = doc_of.get(chunk_id)
        if doc is not None:
            seen.setdefault(doc)
    return list(seen)


def score_mode(r: DevRankings, mode: str, config: FusionConfig | None = None, k: int = BENCH_K) -> dict[str, float]:
    """Retrieval metrics of one mode on cached lists, as `run_search` with this k would rank them."""
    from training.evaluate import retrieval_metrics

    ranked: dict[str, list[str]] = {}
    for qid in r.qrels:
        dense, keyword = r.dense.get(qid, []), r.keyword.get(qid, [])
        if mode == "dense":
            passages = dense[:k]
        elif mode == "keyword":
            passages = keyword[:k]
        else:
            assert config is not None
            pool = max(k, config.candidates)
            passages = fuse(dense[:pool], keyword[:pool], config)[:k]
        ranked[qid] = ranked_docs(passages, r.doc_of, k)
    return retrieval_metrics(ranked, r.qrels)


@dataclass
class Sweep:
    """Every setting's nDCG@10 on every set, plus the single modes."""

    sets: list[str]
    singles: dict[str, dict[str, float]]  # set -> {"dense": ndcg, "keyword": ndcg}
    settings: list[FusionConfig]
    ndcg: list[dict[str, float]]  # per setting: set -> hybrid ndcg
    seconds: float = 0.0
    chosen: dict[str, Any] = field(default_factory=dict)

    def margin(self, i: int, sets: Sequence[str]) -> float:
        return min(self.ndcg[i][s] - max(self.singles[s].values()) for s in sets)

    def mean(self, i: int, sets: Sequence[str]) -> float:
        return sum(self.ndcg[i][s] for s in sets) / len(sets)

    def best(self, sets: Sequence[str], method: str | Sequence[str] | None = None) -> int:
        methods = [method] if isinstance(method, str) else method
        idx = [i for i, c in enumerate(self.settings) if methods is None or c.method in methods]
        return max(idx, key=lambda i: (round(self.margin(i, sets), 6), round(self.mean(i, sets), 6), -i))

    def others(self, name: str) -> list[str]:
        return [s for s in self.sets if s != name]

    def chosen_alone(self, method: str) -> dict[str, int]:
        """`method`'s setting chosen on each set alone, by set (none with a single set: nothing to check on)."""
        return {s: self.best([s], method) for s in self.sets} if len(self.sets) > 1 else {}

    def transfer_margin(self, method: str) -> float:
        """The worst margin of `method` when its setting is chosen on one set and checked on the others."""
        chosen = self.chosen_alone(method)
        return min((self.margin(i, self.others(s)) for s, i in chosen.items()), default=0.0)

    def transfer_margins(self) -> dict[str, float]:
        """`transfer_margin` of every method in the sweep, by name."""
        return {m: self.transfer_margin(m) for m in sorted({c.method for c in self.settings})}

    def transferring_methods(self) -> list[str]:
        """The methods whose one-set choice never falls below the better single mode on another set (all of
        them if none does)."""
        margins = self.transfer_margins()
        return [m for m, margin in margins.items() if margin >= 0.0] or list(margins)


class _Prepared:
    """One set's lists at one depth as aligned arrays per query, so a setting is scored with a few numpy
    operations; the fused order equals `fusion.fuse` (score descending, then id)."""

    def __init__(self, r: DevRankings, pool: int):
        from .fusion import _normalised

        self.queries: list[tuple[str, np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]] = []
        for qid in r.qrels:
            dense, keyword = r.dense.get(qid, [])[:pool], r.keyword.get(qid, [])[:pool]
            ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in keyword]))
            pos = {i: n for n, i in enumerate(ids)}
            parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for method in ("minmax", "zscore"):
                cols = []
                for ranked in (dense, keyword):
                    norm, missing = _normalised(ranked, method)  # type: ignore[arg-type]
                    if not norm:
                        missing = 0.0
                    col = np.full(len(ids), missing, dtype=np.float64)
                    for i, v in norm.items():
                        col[pos[i]] = v
                    cols.append(col)
                parts[method] = (cols[0], cols[1])
            ranks = []
            for ranked in (dense, keyword):
                col = np.zeros(len(ids), dtype=np.float64)  # 0 = absent
                for rank, (i, _) in enumerate(ranked, 1):
                    col[pos[i]] = rank
                ranks.append(col)
            parts["rank"] = (ranks[0], ranks[1])
            docs = np.asarray([r.doc_of.get(i, "") for i in ids], dtype=object)
            self.queries.append((qid, np.asarray(ids, dtype=np.int64), docs, parts))

    def ranked(self, c: FusionConfig, k: int = BENCH_K) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for qid, ids, docs, parts in self.queries:
            if not len(ids):
                out[qid] = []
                continue
            if c.method == "rrf":
                rd, rk = parts["rank"]
                with np.errstate(divide="ignore"):
                    score = (np.where(rd > 0, c.dense_weight / (c.rrf_k + rd), 0.0)
                             + np.where(rk > 0, c.keyword_weight / (c.rrf_k + rk), 0.0))
                # fuse() leaves an id out of a list's sum rather than adding 0: same value
            else:
                d, kw = parts[c.method]
                score = c.dense_weight * d + c.keyword_weight * kw
            order = np.lexsort((ids, -score))[:k]
            out[qid] = [doc for doc in dict.fromkeys(docs[order].tolist()) if doc]
        return out


def sweep(rankings: Sequence[DevRankings], settings: Sequence[FusionConfig] | None = None) -> Sweep:
    from training.evaluate import retrieval_metrics

    started = time.perf_counter()
    settings = list(settings or grid())
    singles = {r.name: {m: score_mode(r, m)["ndcg@10"] for m in ("dense", "keyword")} for r in rankings}
    prepared: dict[tuple[str, int], _Prepared] = {}
    ndcg: list[dict[str, float]] = []
    for c in settings:
        row = {}
        for r in rankings:
            pool = max(BENCH_K, c.candidates)
            prep = prepared.get((r.name, pool))
            if prep is None:
                prep = prepared[(r.name, pool)] = _Prepared(r, pool)
            row[r.name] = retrieval_metrics(prep.ranked(c), r.qrels)["ndcg@10"]
        ndcg.append(row)
    return Sweep([r.name for r in rankings], singles, settings, ndcg, time.perf_counter() - started)


def report(sw: Sweep) -> tuple[str, FusionConfig, dict[str, Any]]:
    """The markdown report, the chosen setting and the measurements to store with it."""
    lines = ["| set | dense | keyword | better single |", "|---|---:|---:|---:|"]
    for s in sw.sets:
        d, k = sw.singles[s]["dense"], sw.singles[s]["keyword"]
        lines.append(f"| {s} | {d:.3f} | {k:.3f} | {max(d, k):.3f} |")
    head = "| chosen on | method | setting | " + " | ".join(f"{s} hybrid (margin)" for s in sw.sets) + " |"
    lines += ["", head, "|---|---|---|" + "---:|" * len(sw.sets)]

    def row(label: str, i: int) -> str:
        c = sw.settings[i]
        cells = " | ".join(f"{sw.ndcg[i][s]:.3f} ({sw.ndcg[i][s] - max(sw.singles[s].values()):+.3f})" for s in sw.sets)
        return f"| {label} | {c.method} | {c.describe()} | {cells} |"

    groups: list[tuple[str, list[str]]] = [("all sets", sw.sets)]
    if len(sw.sets) > 1:
        groups += [(s, [s]) for s in sw.sets]
    for label, sets in groups:
        for method in ("rrf", "minmax", "zscore", None):
            lines.append(row(f"{label}{'' if method else ' (any method)'}", sw.best(sets, method)))
    methods = sw.transferring_methods()
    chosen = sw.best(sw.sets, methods)
    config = sw.settings[chosen]
    lines += ["", "transfer (a method's setting chosen on one set, worst margin on the others): "
              + ", ".join(f"{m} {margin:+.3f}" for m, margin in sw.transfer_margins().items()),
              f"chosen (worst margin over all sets, then mean, among {', '.join(methods)}): {config.describe()}; "
              f"{len(sw.settings)} settings x {len(sw.sets)} sets scored in {sw.seconds:.1f} s"]
    transfer: dict[str, Any] = {}  # the chosen method, its setting chosen on one set and checked on the others
    for label, i in sw.chosen_alone(config.method).items():
        transfer[label] = {"setting": sw.settings[i].to_dict(),
                           "checked_on": {s: round(sw.ndcg[i][s], 4) for s in sw.others(label)},
                           "margin_on_others": round(sw.margin(i, sw.others(label)), 4)}
    measured = {
        "dev_ndcg@10": {s: {"dense": round(sw.singles[s]["dense"], 4), "keyword": round(sw.singles[s]["keyword"], 4),
                            "hybrid": round(sw.ndcg[chosen][s], 4)} for s in sw.sets},
        "worst_margin": round(sw.margin(chosen, sw.sets), 4),
        "chosen_on_one_checked_on_the_others": transfer,
    }
    return "\n".join(lines), config, measured


def write_block(model: str, block: dict[str, Any]) -> Path:
    """Store `block` with the model: the shipped default's manifest, or a model directory's config.json."""
    if model == "default":
        from encoder.default import SHIPPED_DIR

        path = SHIPPED_DIR / "default.json"
        data = json.loads(path.read_text())
        data["search"] = block
    else:
        path = Path(model).expanduser() / "config.json"
        if not path.is_file():
            raise SystemExit(f"error: {model}: not a model directory with a config.json; the fusion block is "
                             "stored with the model, so --model must be 'default' or a model directory")
        data = json.loads(path.read_text())
        data.setdefault("nvembed_search", {})["search"] = block
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    _MODEL_CACHE.clear()
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m index.calibrate", description=__doc__.splitlines()[0],
                                epilog="The candidate lists are cached per model fingerprint and data under "
                                       "~/.cache/nvembed-search/fusion/ ($NVEMBED_CACHE_DIR/fusion).")
    p.add_argument("--model", required=True, help="'default' or a model directory (NV-Embed layout)")
    p.add_argument("--beir", type=Path, nargs="+", required=True, help="dev sets in BEIR layout")
    p.add_argument("--device", default=None)
    p.add_argument("--dry-run", action="store_true", help="measure and report, write nothing")
    p.add_argument("--refresh", action="store_true", help="rebuild the cached candidate lists")
    p.add_argument("--json", type=Path, help="also write the sweep (every setting's figures) here")
    args = p.parse_args(argv)
    from encoder import NVEmbedModel

    for d in args.beir:
        if not (d / "corpus.jsonl").is_file():
            raise SystemExit(f"error: {d}: not a BEIR-layout dev set (no corpus.jsonl)")
    encoder = NVEmbedModel.from_pretrained(args.model, device=args.device)
    print(f"model {encoder.name} ({encoder.num_layers} layers), fingerprint {encoder.fingerprint}", flush=True)
    rankings = [load_or_build(encoder, d, refresh=args.refresh) for d in args.beir]
    sw = sweep(rankings)
    text, config, measured = report(sw)
    print(text)
    block = {
        "fingerprint": str(encoder.fingerprint),
        "fusion": config.to_dict(),
        "measured": measured,
        "command": "python -m index.calibrate --model " + args.model + " --beir "
                   + " ".join(f"$S/eval/{d.name}" for d in args.beir),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        args.json.write_text(json.dumps({"block": block, "settings": [c.to_dict() for c in sw.settings],
                                         "ndcg@10": sw.ndcg, "singles": sw.singles}, indent=1))
    if args.dry_run:
        print("dry run: nothing written")
    else:
        print(f"wrote the search block to {write_block(args.model, block)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
