"""The command-line tools, in-process through their `main` and once each as `python -m`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from index import delete as delete_cli
from index import ingest as ingest_cli
from index import list as list_cli
from index import search as search_cli
from index.cli import run

from .docgen import mixed_folder

ROOT = Path(__file__).resolve().parents[2]


def _run(tool, argv, capsys):
    code = run(tool.main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def built(tmp_path, capsys):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    unique = mixed_folder(docs)
    (docs / "ignored.xyz").write_text("not a document")
    code, out, err = _run(ingest_cli, [str(docs), "--index", str(ix), "--model", "hash:64", "--chunk-tokens", "64",
                                       "--overlap", "8", "-v"], capsys)
    assert code == 0, err
    assert "5 added, 0 updated, 0 unchanged, 0 removed, 0 failed, 1 skipped" in out
    assert "unsupported type .xyz" in out and "elapsed" in out
    assert "100%" in err  # the progress bar
    return docs, ix, unique


def test_ingest_search_list_delete(built, capsys):
    docs, ix, unique = built
    code, out, _ = _run(search_cli, [unique["report.pdf"], "--index", str(ix), "--json", "--k", "3"], capsys)
    results = json.loads(out)
    assert code == 0 and len(results) == 3
    assert {"path", "page", "score", "text", "rank", "highlights"} <= set(results[0])
    assert results[0]["path"] == str(docs / "report.pdf") and results[0]["page"] == 2

    code, out, _ = _run(search_cli, ["flux capacitor", "--index", str(ix), "--mode", "keyword",
                                     "--filter", "type=md"], capsys)
    assert code == 0 and "guide.md" in out and "flux" in out and "**" not in out  # piped: plain text

    code, out, _ = _run(search_cli, ["lighthouse keepers", "--index", str(ix), "--mode", "hybrid", "--rag",
                                     "--budget", "200"], capsys)
    assert code == 0 and out.startswith("[1] ")

    code, out, _ = _run(search_cli, ["lighthouse", "--index", str(ix), "--rag", "--json", "--mode", "keyword"], capsys)
    payload = json.loads(out)
    assert payload["citations"][0]["number"] == 1 and "context" in payload and payload["results"]

    code, out, err = _run(list_cli, ["--index", str(ix)], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 5 and "5 documents" in err
    code, out, _ = _run(list_cli, ["--index", str(ix), "--json", "--filter", "type=pdf"], capsys)
    assert [d["path"] for d in json.loads(out)] == [str(docs / "report.pdf")]
    code, out, _ = _run(list_cli, ["--index", str(ix), "--stats"], capsys)
    assert "hash:64" in out and "documents: 5" in out
    code, out, _ = _run(list_cli, ["--index", str(ix), "--check"], capsys)
    assert code == 0 and out.startswith("consistent")

    code, out, err = _run(delete_cli, [str(docs / "memo.docx"), str(docs / "nope.txt"), "--index", str(ix)], capsys)
    assert code == 1 and "deleted" in out and "not in the index" in err

    code, out, _ = _run(ingest_cli, [str(docs), "--index", str(ix), "--quiet"], capsys)  # model from the index
    assert code == 0 and "1 added" in out and "4 unchanged" in out


def test_errors_are_one_line_with_status_2(built, capsys, tmp_path):
    docs, ix, _ = built
    code, _, err = _run(ingest_cli, [str(docs), "--index", str(ix), "--model", "hash:32", "-q"], capsys)
    assert code == 2 and "hash:64" in err and "hash:32" in err and "--reindex" in err
    code, _, err = _run(ingest_cli, [str(docs), "--index", str(ix), "--chunk-tokens", "32", "-q"], capsys)
    assert code == 2 and "chunk_tokens=64" in err
    code, _, err = _run(ingest_cli, [str(tmp_path / "missing"), "--index", str(ix), "-q"], capsys)
    assert code == 2 and "missing" in err
    code, _, err = _run(search_cli, ["x", "--index", str(tmp_path / "none")], capsys)
    assert code == 2 and "no index at" in err
    code, _, err = _run(search_cli, ["x", "--index", str(ix), "--filter", "size=3"], capsys)
    assert code == 2 and "size" in err
    code, out, _ = _run(ingest_cli, [str(docs), "--index", str(ix), "--model", "hash:32", "--reindex", "-q"], capsys)
    assert code == 0 and "5 unchanged" in out


def test_python_dash_m_and_default_location(tmp_path):
    docs = tmp_path / "docs"
    mixed_folder(docs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NVEMBED_INDEX_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "index.ingest", "docs", "--model", "hash:64", "-q"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "index" / "meta.sqlite3").exists()  # ./data/index under the current directory
    env["NVEMBED_INDEX_DIR"] = str(tmp_path / "data" / "index")
    proc = subprocess.run([sys.executable, "-m", "index.search", "quokka eucalyptus", "--json", "--k", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["path"] == str(docs / "notes.txt")
    assert "RuntimeWarning" not in proc.stderr


def test_vector_index_options_change_only_what_is_asked(built, capsys):
    docs, ix, _ = built
    from index.cli import stored_record

    assert _run(ingest_cli, [str(docs), "--index", str(ix), "--vector-index", "ivf", "-q"], capsys)[0] == 0
    assert stored_record(ix).vector_kind == "ivf"
    assert _run(ingest_cli, [str(docs), "--index", str(ix), "--nprobe", "8", "-q"], capsys)[0] == 0
    record = stored_record(ix)
    assert (record.vector_kind, record.nprobe) == ("ivf", 8)


def test_the_ingest_command_runs_under_jemalloc_when_it_is_installed(tmp_path):
    from index.allocator import jemalloc_env, jemalloc_library

    docs = tmp_path / "docs"
    mixed_folder(docs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("NVEMBED_JEMALLOC", "NVEMBED_JEMALLOC_TRIED", "LD_PRELOAD", "MALLOC_CONF"):
        env.pop(key, None)
    ran = {}
    for setting in ("", "0"):
        env["NVEMBED_JEMALLOC"] = setting
        proc = subprocess.run([sys.executable, "-m", "index.ingest", str(docs), "--index", str(tmp_path / "ix"),
                               "--model", "hash:64", "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        ran[setting] = json.loads(proc.stdout)["allocator"]
    assert ran["0"] == "libc"
    assert ran[""] == ("jemalloc" if jemalloc_library() else "libc")
    # The decision itself: once only, never over an existing jemalloc preload, off with NVEMBED_JEMALLOC=0.
    assert jemalloc_env({}, "libjemalloc.so.2")["LD_PRELOAD"] == "libjemalloc.so.2"
    assert jemalloc_env({"LD_PRELOAD": "a.so"}, "j.so")["LD_PRELOAD"] == "j.so:a.so"
    assert jemalloc_env({"NVEMBED_JEMALLOC_TRIED": "1"}, "j.so") is None
    assert jemalloc_env({"LD_PRELOAD": "/x/libjemalloc.so.2"}, "j.so") is None
    assert jemalloc_env({"NVEMBED_JEMALLOC": "0"}, "j.so") is None
    assert jemalloc_env({}, None) is None
