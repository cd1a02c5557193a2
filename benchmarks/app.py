"""The app's speed with the default model: start-up to the first usable page, and search from submit to
results on an index of about 10,000 passages. Optionally, the README screenshot.

    python benchmarks/app.py [--workdir DIR] [--chunks 10000] [--queries 8] [--starts 3]
                             [--screenshot docs/app-results.png] [--screenshot-docs 120]

1. Index. Real documents are written as text files under WORKDIR/docs: the Cranfield and CISI corpora, then
   MedQuAD answers, one file each, until the index holds `--chunks` passages. They are ingested through the
   index facade with the *default model's* identity (name, fingerprint, dimension, max_length) and its real
   tokenizer, so the documents are cut into exactly the passages the default model would get, and the app
   opens the index with the real default model. Only the passage vectors are computed differently: the
   default model embeds about 1.5 passages/s on 2 CPU cores (some 2 hours for 10,000), so they come from
   `index.testing.HashEncoder(576)` (a bag-of-words random projection, unit norm, same shape). A flat FAISS
   search costs the same whatever the vectors hold, and the query is embedded by the real model, so the
   timings are those of the real app; the semantic *ranking* on this index is meaningless (keyword is real).
   The index is kept in WORKDIR and reused by later runs.
2. Start-up: `streamlit run app/main.py -- --index WORKDIR/index` is started (a fresh process: imports, model
   load, index open) while a headless Chromium waits; the clock runs from the launch until the page shows
   the index's figures and the search box with the script finished ("first usable page"). `--starts` times.
3. Search: in that browser, for `--queries` Cranfield/CISI queries and each mode, the query is typed into
   the box and Enter pressed; the clock runs until the summary line for that query and all its result cards
   are in the page. The search call's own time (the facade's `search`, query embedding included) is read from the summary
   line the app shows. The same
   is measured without a browser through `streamlit.testing.v1.AppTest` (submit, one script run).
   `--startup-only --compare DIR` times only start-ups, alternating between this checkout's app and the one
   in DIR (another checkout, e.g. `git worktree add /tmp/old <commit>`), `--starts` of each, in the same
   browser setup and minutes. Besides the first usable page, it types a semantic query into that first page
   at once and times until its results are in ("first semantic results", from the launch): the model has to
   be loaded by then, wherever it was loaded.
4. `--screenshot PATH`: a separate small index of `--screenshot-docs` Cranfield documents embedded by the
   real default model (real vectors), a hybrid search opened from a URL, and a 1400x1000 screenshot
   (also PATH with -dark before the suffix, in the dark theme).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
CRANFIELD = DATA / "eval" / "cranfield"
CISI = DATA / "eval" / "cisi"
MEDQUAD = DATA / "train" / "medquad" / "pairs.jsonl"
MODES = ("semantic", "hybrid", "keyword")
K = 10


def jsonl(path: Path) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


class DefaultIdentityHashVectors:
    """The default model's identity and tokenizer, with `HashEncoder` vectors (see the module docstring)."""

    def __init__(self, model):
        from index.testing import HashEncoder

        self._model = model
        self._hash = HashEncoder(dimension=model.dimension, max_length=model.max_length)
        self.name, self.fingerprint = model.name, model.fingerprint
        self.dimension, self.max_length, self.tokenizer = model.dimension, model.max_length, model.tokenizer

    def count_tokens(self, texts):
        return self._model.count_tokens(texts)

    def encode_queries(self, texts, *args, **kwargs):
        return self._model.encode_queries(texts, *args, **kwargs)

    def encode_passages(self, texts, batch_size=32, max_length=None, show_progress=None):
        return self._hash.encode_passages(texts)


def write_docs(folder: Path, docs: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs:
        (folder / name).write_text(text)


def build_index(workdir: Path, target_chunks: int) -> dict:
    """The ~10k-passage index in WORKDIR/index (reused when it already has enough passages)."""
    import index
    from encoder import NVEmbedModel

    directory = workdir / "index"
    if (directory / "meta.sqlite3").exists():
        with index.open(directory) as ix:
            stats = ix.stats()
        if stats.chunks >= target_chunks:
            return {"documents": stats.documents, "chunks": stats.chunks, "reused": True, "seconds": 0.0}
    started = time.perf_counter()
    model = NVEmbedModel.from_pretrained("default")
    encoder = DefaultIdentityHashVectors(model)
    docs = workdir / "docs"
    cran = [(f"cranfield-{d['_id']}.txt", d["text"]) for d in jsonl(CRANFIELD / "corpus.jsonl")]
    cisi = [(f"cisi-{d['_id']}.txt", f"{d['title']}\n\n{d['text']}") for d in jsonl(CISI / "corpus.jsonl")]
    answers = list(dict.fromkeys(p["positive"].strip() for p in jsonl(MEDQUAD) if p["positive"].strip()))
    random.Random(0).shuffle(answers)
    with index.open(directory, encoder, model_source="default") as ix:
        for name, batch in (("cranfield", cran), ("cisi", cisi)):
            write_docs(docs / name, batch)
            ix.ingest(docs / name)
        part = 0
        while ix.stats().chunks < target_chunks and answers:
            need = target_chunks - ix.stats().chunks
            take = max(20, min(500, int(need / 1.6)))
            batch, answers = answers[:take], answers[take:]
            folder = docs / f"medquad-{part:03d}"
            write_docs(folder, [(f"medquad-{part:03d}-{i:04d}.txt", text) for i, text in enumerate(batch)])
            ix.ingest(folder)
            part += 1
        stats = ix.stats()
    return {"documents": stats.documents, "chunks": stats.chunks, "reused": False,
            "seconds": time.perf_counter() - started}


def queries(n: int) -> list[str]:
    cran = [q["text"].rstrip(" .") for q in jsonl(CRANFIELD / "queries.jsonl")]
    cisi = [q["text"] for q in jsonl(CISI / "queries.jsonl") if len(q["text"]) < 160]
    rng = random.Random(1)
    picked = rng.sample(cran, (n + 1) // 2) + rng.sample(cisi, n // 2)
    return [" ".join(q.split()) for q in picked]


def search_seconds(summary: str) -> float | None:
    """The search call's time that the results summary line shows ("10 results for … · 0.42 s · …")."""
    match = re.search(r"·\s*([0-9.]+) s\b", summary)
    return float(match.group(1)) if match else None


def summary_and_cards(query: str, k: int) -> str:
    """JavaScript: the results of `query` are in the page (its summary line and k cards)."""
    return (f"(() => {{ const s = document.querySelector('.nv-results-summary'); "
            f"return !!s && s.innerText.includes({json.dumps('“' + query + '”')}) && "
            f"document.querySelectorAll('.nv-head').length >= {k}; }})()")


def measure_browser(workdir: Path, starts: int, qs: list[str]) -> dict:
    from app.testing import Browser, serve

    out: dict = {"startup": [], "search": {m: [] for m in MODES}, "search_idle": {m: [] for m in MODES},
                 "search_in_app": {m: [] for m in MODES}}
    args = ["--index", str(workdir / "index"), "--uploads", str(workdir / "uploads")]
    for attempt in range(starts):
        with Browser(window=(1400, 1000)) as browser:
            launched = time.perf_counter()
            with serve(args, timeout=300, log_path=workdir / "server.log") as url:
                healthy = time.perf_counter() - launched
                browser.goto(url + "/")
                browser.wait_for_text("passages). ", timeout=300)  # the index's figures: model and index loaded
                browser.wait_for("!!document.querySelector('input[aria-label=\"Query\"]')", timeout=60)
                browser.wait_idle(timeout=120, settle=0.3)
                usable = time.perf_counter() - launched - 0.3  # wait_idle waited `settle` after the run ended
                out["startup"].append({"server_healthy_s": healthy, "first_usable_page_s": usable})
                print(f"start {attempt + 1}: server healthy after {healthy:.1f} s, first usable page after "
                      f"{usable:.1f} s", flush=True)
                if attempt < starts - 1:
                    continue
                for mode in MODES:  # the last start also measures searches
                    browser.goto(url + "/?" + urlencode({"mode": mode}))
                    browser.wait_for("!!document.querySelector('input[aria-label=\"Query\"]')", timeout=120)
                    browser.wait_idle(timeout=120, settle=0.3)
                    for q in qs:
                        submitted = time.perf_counter()
                        browser.type_and_submit('input[aria-label="Query"]', q)
                        browser.wait_for(summary_and_cards(q, K), timeout=120, poll=0.05)
                        seconds = time.perf_counter() - submitted
                        waited = time.perf_counter() - submitted
                        idle = waited + browser.wait_idle(timeout=60, settle=0.3)
                        call = search_seconds(str(browser.eval(
                            "document.querySelector('.nv-results-summary').innerText")))
                        out["search"][mode].append(seconds)
                        out["search_idle"][mode].append(idle)
                        if call is not None:
                            out["search_in_app"][mode].append(call)
                        print(f"  {mode:8s} results {seconds:5.2f} s, idle {idle:5.2f} s  {q[:60]}", flush=True)
    return out


def measure_startups(workdir: Path, roots: dict[str, Path], starts: int, query: str) -> dict[str, list[dict]]:
    """Start-up of each checkout's app, alternating (see the module docstring, 2.)."""
    from app.testing import Browser, serve

    out: dict[str, list[dict]] = {label: [] for label in roots}
    args = ["--index", str(workdir / "index"), "--uploads", str(workdir / "uploads")]
    for attempt in range(starts):
        order = list(roots.items())
        if attempt % 2:
            order.reverse()
        for label, root in order:
            number = list(roots).index(label)
            with Browser(window=(1400, 1000)) as browser:
                launched = time.perf_counter()
                with serve(args, timeout=300, log_path=workdir / f"server-{number}.log", root=root) as url:
                    healthy = time.perf_counter() - launched
                    browser.goto(url + "/")
                    browser.wait_for_text("passages). ", timeout=300)
                    browser.wait_for("!!document.querySelector('input[aria-label=\"Query\"]')", timeout=60)
                    browser.wait_idle(timeout=300, settle=0.3)
                    usable = time.perf_counter() - launched - 0.3
                    browser.type_and_submit('input[aria-label="Query"]', query)  # semantic: the default mode
                    browser.wait_for(summary_and_cards(query, K), timeout=300, poll=0.05)
                    semantic = time.perf_counter() - launched
            out[label].append({"server_healthy_s": healthy, "first_usable_page_s": usable,
                               "first_semantic_results_s": semantic})
            print(f"{label} start {attempt + 1}: healthy {healthy:.1f} s, first usable page {usable:.1f} s, "
                  f"first semantic results {semantic:.1f} s", flush=True)
    return out


def measure_apptest(workdir: Path, qs: list[str]) -> dict:
    os.environ["NVEMBED_INDEX_DIR"] = str(workdir / "index")
    os.environ["NVEMBED_UPLOAD_DIR"] = str(workdir / "uploads")
    os.environ.pop("NVEMBED_MODEL", None)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=600)
    started = time.perf_counter()
    at.run()
    first = time.perf_counter() - started
    out: dict = {"first_run_s": first, "search": {m: [] for m in MODES}}
    for mode in MODES:
        at.segmented_control(key="s_mode").set_value(mode)
        for q in qs:
            at.text_input(key="s_query").input(q)
            button = next(b for b in at.button if b.label == "Search")
            started = time.perf_counter()
            button.click().run()
            out["search"][mode].append(time.perf_counter() - started)
            cards = [h for h in at.html if "nv-head" in h.value and "<style" not in h.value]
            assert cards and not at.exception, (q, len(cards), at.exception)
    return out


def screenshot(path: Path, workdir: Path, n_docs: int) -> None:
    import index
    from app.testing import Browser, serve
    from encoder import NVEmbedModel

    directory = workdir / "real-index"
    docs = workdir / "real-docs"
    if not (directory / "meta.sqlite3").exists():
        rows = jsonl(CRANFIELD / "corpus.jsonl")[:n_docs]
        write_docs(docs, [(f"cranfield-{d['_id']:0>4}.txt", d["text"]) for d in rows])
        started = time.perf_counter()
        with index.open(directory, NVEmbedModel.from_pretrained("default"), model_source="default") as ix:
            ix.ingest(docs)
        print(f"screenshot index: {n_docs} Cranfield documents embedded in {time.perf_counter() - started:.0f} s")
    query = "heat transfer in the boundary layer at high speed"
    args = ["--index", str(directory), "--uploads", str(workdir / "uploads")]
    with serve(args, timeout=300) as url:
        for dark, out in ((False, path), (True, path.with_name(path.stem + "-dark" + path.suffix))):
            with Browser(window=(1400, 1000), dark=dark) as browser:
                browser.goto(url + "/?" + urlencode({"q": query, "mode": "hybrid", "k": 5}))
                browser.wait_for(summary_and_cards(query, 5), timeout=300)
                browser.wait_idle(timeout=120)
                browser.screenshot(out)
                print(f"screenshot: {out}")


def stats_line(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nvembed-app-bench")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--screenshot-docs", type=int, default=120)
    parser.add_argument("--skip-timing", action="store_true", help="only build the index / take the screenshot")
    parser.add_argument("--startup-only", action="store_true", help="time start-ups only (see 2.)")
    parser.add_argument("--compare", type=Path, help="with --startup-only: another checkout to alternate with")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.startup_only:
        built = build_index(args.workdir, args.chunks)
        print(f"index: {built['documents']} documents, {built['chunks']} passages", flush=True)
        roots = {"this checkout": ROOT, **({f"{args.compare}": args.compare.resolve()} if args.compare else {})}
        before = os.getloadavg()
        runs = measure_startups(args.workdir, roots, args.starts, queries(1)[0])
        print(json.dumps({"load_average_before": before, "load_average_after": os.getloadavg(), "runs": runs},
                         indent=2))
        print(f"\nload average (1 min) before {before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
        print("| app | starts | server healthy | first usable page (median, min-max) | first semantic results |\n"
              "|---|---:|---:|---:|---:|")
        for label, rows in runs.items():
            def cell(key: str, rows: list[dict] = rows) -> str:
                values = [r[key] for r in rows]
                return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"
            print(f"| {label} | {len(rows)} | {cell('server_healthy_s')} | {cell('first_usable_page_s')} | "
                  f"{cell('first_semantic_results_s')} |")
        return

    report: dict = {"cpu_cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    if not args.skip_timing:
        built = build_index(args.workdir, args.chunks)
        report["index"] = built
        how = "reused" if built["reused"] else f"built in {built['seconds']:.0f} s"
        print(f"index: {built['documents']} documents, {built['chunks']} passages ({how})", flush=True)
        qs = queries(args.queries)
        report["browser"] = measure_browser(args.workdir, args.starts, qs)
        report["apptest"] = measure_apptest(args.workdir, qs)
        report["load_average_after"] = os.getloadavg()
        print(json.dumps(report, indent=2))
        b, a = report["browser"], report["apptest"]
        ups = [s["first_usable_page_s"] for s in b["startup"]]
        print(f"\nload average (1 min) before {report['load_average_before'][0]:.1f}, after "
              f"{report['load_average_after'][0]:.1f} on {report['cpu_cores']} cores")
        print(f"start-up to first usable page: {stats_line(ups)} ({len(ups)} starts)")
        for mode in MODES:
            print(f"{mode:8s} submit->results, browser: {stats_line(b['search'][mode])} (page idle: "
                  f"{stats_line(b['search_idle'][mode])}); AppTest: {stats_line(a['search'][mode])}; "
                  f"search call: {stats_line(b['search_in_app'][mode])}")
    if args.screenshot:
        screenshot(args.screenshot, args.workdir, args.screenshot_docs)


if __name__ == "__main__":
    main()
