"""Evaluation of an embedding model: BEIR retrieval metrics, STS-B Spearman, Banking77 accuracy.

    python -m training.evaluate --model M --beir DIR [DIR ...] [--instruction I] [--max-queries N]
        [--max-docs N] [--sts FILE] [--banking77 DIR] [--json]

Retrieval follows BEIR / trec_eval conventions: exact inner-product search over the (subset) corpus,
nDCG@10 with graded gains (gain = relevance label, log2 discount, ideal ranking from all judged relevant
documents), recall@10 and recall@100 over documents with a label > 0, MRR@10; queries without a relevant
judgement are skipped. Document ids equal to query ids are NOT dropped (Cranfield and CISI number queries
and documents independently). The subset for CPU runs takes `max_queries` judged queries at random (seeded)
and keeps every judged document of those queries, then fills up to `max_docs` with other documents.

STS: cosine of the two sentences, both embedded with the STS instruction; Spearman rank correlation with
the gold score. Banking77: both splits embedded with the Banking77 instruction; multinomial logistic
regression (L2, C = 1, as MTEB's scikit-learn classifier, solved with L-BFGS in torch) or cosine kNN.
All figures are fractions (0.368, not 36.8).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoder import NAMES_HELP, NVEmbedModel
from encoder.instructions import DEFAULT_RETRIEVAL, INSTRUCTIONS

from .config import EvalConfig
from .data import read_banking77, read_sts

RETRIEVAL_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@dataclass
class BeirData:
    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_beir(path: str | Path, split: str = "test", max_queries: int | None = None,
              max_docs: int | None = None, seed: int = 0) -> BeirData:
    """Read a BEIR-layout directory, optionally a seeded subset that keeps every judged document."""
    path = Path(path)
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (path / needed).is_file():
            raise FileNotFoundError(f"{path}: missing {needed} (BEIR layout expected)")
    qrels: dict[str, dict[str, int]] = {}
    with (path / "qrels" / f"{split}.tsv").open() as handle:
        for number, line in enumerate(handle):
            cols = line.rstrip("\n").split("\t")
            if number == 0 and cols[0] == "query-id":
                continue
            if len(cols) >= 3:
                qrels.setdefault(cols[0], {})[cols[1]] = int(float(cols[2]))
    queries = {str(r["_id"]): r["text"] for r in _read_jsonl(path / "queries.jsonl")}
    corpus = {}
    for row in _read_jsonl(path / "corpus.jsonl"):
        title, text = (row.get("title") or "").strip(), (row.get("text") or "").strip()
        corpus[str(row["_id"])] = text if not title or text.startswith(title) else f"{title} {text}"
    judged = sorted((q for q in qrels if q in queries and any(v > 0 for v in qrels[q].values())), key=_natural)
    rng = random.Random(seed)
    if max_queries is not None and len(judged) > max_queries:
        judged = sorted(rng.sample(judged, max_queries), key=_natural)
    qrels = {q: {d: v for d, v in qrels[q].items() if d in corpus} for q in judged}
    if max_docs is not None and len(corpus) > max_docs:
        keep = {d for q in judged for d in qrels[q]}
        others = sorted((d for d in corpus if d not in keep), key=_natural)
        keep |= set(rng.sample(others, max(0, min(len(others), max_docs - len(keep)))))
        corpus = {d: t for d, t in corpus.items() if d in keep}
    return BeirData(path.name, {q: queries[q] for q in judged}, corpus, qrels)


def _natural(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def retrieval_metrics(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10, recall@100, MRR@10 over queries with a relevant judgement."""
    totals = Counter()
    counted = 0
    for query, labels in qrels.items():
        relevant = {d for d, v in labels.items() if v > 0}
        if not relevant:
            continue
        counted += 1
        ranking = ranked.get(query, [])
        dcg = sum(labels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]) if labels.get(d, 0) > 0)
        ideal = sorted((v for v in labels.values() if v > 0), reverse=True)[:10]
        idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
        totals["ndcg@10"] += dcg / idcg
        totals["recall@10"] += len(relevant & set(ranking[:10])) / len(relevant)
        totals["recall@100"] += len(relevant & set(ranking[:100])) / len(relevant)
        first = next((i for i, d in enumerate(ranking[:10]) if d in relevant), None)
        totals["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
    return {m: totals[m] / counted if counted else 0.0 for m in RETRIEVAL_METRICS}


def search(queries: np.ndarray, docs: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Indices of the top-k documents by inner product for each query (exact, blocked over queries)."""
    k = min(k, docs.shape[0])
    out = np.zeros((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        scores = queries[start : start + block] @ docs.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def embed_beir(model: NVEmbedModel, data: BeirData, instruction: str | None = None, batch_size: int = 32,
               max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query embeddings in `data.queries` order, document embeddings in `data.corpus` order)."""
    docs = model.encode_passages(list(data.corpus.values()), batch_size=batch_size, max_length=max_length)
    queries = model.encode_queries(list(data.queries.values()), instruction or DEFAULT_RETRIEVAL,
                                   batch_size=batch_size, max_length=max_length)
    return queries, docs


def score_beir(data: BeirData, queries: np.ndarray, docs: np.ndarray) -> dict[str, float]:
    """Retrieval metrics of embeddings from `embed_beir`."""
    doc_ids = list(data.corpus)
    query_ids = list(data.queries)
    top = search(queries, docs, 100)
    ranked = {q: [doc_ids[j] for j in top[i]] for i, q in enumerate(query_ids)}
    return {**retrieval_metrics(ranked, data.qrels), "queries": len(query_ids), "docs": len(doc_ids)}


def evaluate_beir(model: NVEmbedModel, data: BeirData, instruction: str | None = None, batch_size: int = 32,
                  max_length: int | None = None) -> dict[str, float]:
    return score_beir(data, *embed_beir(model, data, instruction, batch_size, max_length))


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (1-based), as scipy.stats.rankdata."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of tie-averaged ranks)."""
    rx, ry = rank(np.asarray(x, dtype=np.float64)), rank(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denominator) if denominator else 0.0


def evaluate_sts(model: NVEmbedModel, path: str | Path, batch_size: int = 32, max_length: int | None = None,
                 max_pairs: int | None = None, seed: int = 0) -> dict[str, float]:
    rows = read_sts(path)
    if max_pairs is not None and len(rows) > max_pairs:
        rows = random.Random(seed).sample(rows, max_pairs)
    instruction = INSTRUCTIONS["STS"]
    left = model.encode_passages([r[1] for r in rows], batch_size, max_length, instruction=instruction)
    right = model.encode_passages([r[2] for r in rows], batch_size, max_length, instruction=instruction)
    cosine = (left * right).sum(axis=1)
    return {"spearman": spearman(cosine, [r[0] for r in rows]), "pairs": len(rows)}


def logistic_regression(train: np.ndarray, labels: np.ndarray, classes: int, c: float = 1.0,
                        max_iter: int = 100) -> torch.Tensor:
    """Multinomial logistic regression, objective sum(CE) + ||W||^2 / (2C) (scikit-learn's), by L-BFGS."""
    x = torch.from_numpy(train).double()
    y = torch.from_numpy(labels).long()
    weight = torch.zeros(x.shape[1] + 1, classes, dtype=torch.float64, requires_grad=True)
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)  # bias column (not penalised)
    optimizer = torch.optim.LBFGS([weight], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight, y, reduction="sum")
        loss = loss + (weight[:-1] ** 2).sum() / (2 * c)
        loss.backward()
        return loss
    optimizer.step(closure)
    return weight.detach()


def evaluate_banking77(model: NVEmbedModel, path: str | Path, classifier: str = "logreg", max_train: int | None = None,
                       max_test: int | None = None, batch_size: int = 32, max_length: int | None = None,
                       seed: int = 0, k: int = 10) -> dict[str, float]:
    path = Path(path)
    train, test = read_banking77(path / "train.csv"), read_banking77(path / "test.csv")
    rng = random.Random(seed)
    if max_train is not None and len(train) > max_train:
        train = rng.sample(train, max_train)
    if max_test is not None and len(test) > max_test:
        test = rng.sample(test, max_test)
    names = sorted({c for _, c in train} | {c for _, c in test})
    index = {c: i for i, c in enumerate(names)}
    instruction = INSTRUCTIONS["Banking77"]
    x_train = model.encode_passages([t for t, _ in train], batch_size, max_length, instruction=instruction)
    x_test = model.encode_passages([t for t, _ in test], batch_size, max_length, instruction=instruction)
    y_train = np.array([index[c] for _, c in train])
    y_test = np.array([index[c] for _, c in test])
    if classifier == "logreg":
        weight = logistic_regression(x_train, y_train, len(names)).numpy()
        scores = np.concatenate([x_test, np.ones((len(x_test), 1))], axis=1) @ weight
        predicted = scores.argmax(axis=1)
    elif classifier == "knn":
        top = search(x_test, x_train, k)
        predicted = np.array([Counter(y_train[row].tolist()).most_common(1)[0][0] for row in top])
    else:
        raise ValueError(f"classifier must be logreg or knn, got {classifier!r}")
    return {"accuracy": float((predicted == y_test).mean()), "train": len(train), "test": len(test)}


def evaluate_model(model: NVEmbedModel, config: EvalConfig,
                   context: contextlib.AbstractContextManager | None = None) -> dict[str, dict[str, float]]:
    """Every evaluation the config names, as {task name: {metric: value}}."""
    results: dict[str, dict[str, float]] = {}
    was_training = model.training
    model.eval()
    with context or contextlib.nullcontext():
        for path in config.beir:
            data = load_beir(path, max_queries=config.max_queries, max_docs=config.max_docs)
            results[data.name] = evaluate_beir(model, data, config.instruction, config.batch_size, config.max_length)
        if config.sts:
            results["STS-B"] = evaluate_sts(model, config.sts, config.batch_size, config.max_length, config.max_test)
        if config.banking77:
            results["Banking77"] = evaluate_banking77(model, config.banking77, config.classifier, config.max_train,
                                                      config.max_test, config.batch_size, config.max_length)
    model.train(was_training)
    return results


HEADLINE = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "MRR@10",
            "spearman": "Spearman", "accuracy": "Acc"}


def format_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table: one row per model (label), one column per (task, metric)."""
    columns: list[tuple[str, str]] = []
    for results in rows.values():
        for task, metrics in results.items():
            for metric in metrics:
                if metric in HEADLINE and (task, metric) not in columns:
                    columns.append((task, metric))
    header = "| model | " + " | ".join(f"{t} {HEADLINE[m]}" for t, m in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for label, results in rows.items():
        cells = [f"{results[t][m]:.3f}" if m in results.get(t, {}) else "–" for t, m in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help=f"the model: {NAMES_HELP}")
    parser.add_argument("--beir", nargs="*", default=[], metavar="DIR")
    parser.add_argument("--instruction", help="query instruction (a task name such as NFCorpus, or text)")
    parser.add_argument("--max-queries", type=int)
    parser.add_argument("--max-docs", type=int)
    parser.add_argument("--sts", metavar="FILE", help="STS-B test file")
    parser.add_argument("--banking77", metavar="DIR", help="directory with train.csv and test.csv")
    parser.add_argument("--classifier", choices=("logreg", "knn"), default="logreg")
    parser.add_argument("--max-train", type=int, help="Banking77 training subset")
    parser.add_argument("--max-test", type=int, help="Banking77 test / STS pairs subset")
    parser.add_argument("--num-layers", type=int, help="keep only the first N decoder layers")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if not (args.beir or args.sts or args.banking77):
        parser.error("nothing to evaluate: give --beir DIR, --sts FILE or --banking77 DIR")
    from .modeling import resolve_device
    from .teacher import load_embedder

    model, precision = load_embedder(args.model, args.num_layers, resolve_device(args.device))
    config = EvalConfig(beir=args.beir, instruction=args.instruction, max_queries=args.max_queries,
                        max_docs=args.max_docs, sts=args.sts, banking77=args.banking77, classifier=args.classifier,
                        max_train=args.max_train, max_test=args.max_test, batch_size=args.batch_size,
                        max_length=args.max_length)
    results = evaluate_model(model, config, precision.context())
    if args.json:
        print(json.dumps({"model": args.model, "results": results}))
    else:
        print(format_table({args.model: results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
