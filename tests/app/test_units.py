"""The app's pure helpers: configuration, the search as URL parameters, HTML escaping, upload names."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from app.config import ConfigError, load_config, script_args
from app.jobs import safe_name
from app.params import DEFAULT_MODE, SearchRequest
from app.render import highlight_html, human_bytes, js_string


def test_config_arguments_override_environment_override_defaults(tmp_path):
    cfg = load_config([], {})
    assert cfg.index_dir == Path("data/index") and cfg.uploads_dir == Path("data/uploads")
    assert cfg.model is None and cfg.device is None and cfg.budget == 2000
    env = {"NVEMBED_INDEX_DIR": str(tmp_path / "env-ix"), "NVEMBED_MODEL": "tiny", "NVEMBED_DEVICE": "cpu",
           "NVEMBED_RAG_BUDGET": "500"}
    cfg = load_config([], env)
    assert cfg.index_dir == tmp_path / "env-ix" and cfg.uploads_dir == tmp_path / "uploads"
    assert (cfg.model, cfg.device, cfg.budget) == ("tiny", "cpu", 500)
    cfg = load_config(["--index", str(tmp_path / "arg-ix"), "--model", "default", "--uploads", str(tmp_path / "u"),
                       "--budget", "800", "--verbose"], env)
    assert cfg.index_dir == tmp_path / "arg-ix" and cfg.uploads_dir == tmp_path / "u"
    assert (cfg.model, cfg.budget, cfg.unknown_args) == ("default", 800, ("--verbose",))
    with pytest.raises(ConfigError, match="budget"):
        load_config(["--budget", "many"], {})


def test_script_args_only_when_streamlit_runs_this_script(monkeypatch):
    main = Path(__file__).resolve().parents[2] / "app" / "main.py"
    monkeypatch.setattr("sys.argv", [str(main), "--index", "x"])
    assert script_args(main) == ["--index", "x"]
    monkeypatch.setattr("sys.argv", ["pytest", "-k", "something"])
    assert script_args(main) == []


def test_search_request_round_trips_through_the_url():
    req = SearchRequest(query="wing lift", mode="keyword", k=5, task="SciFact", instruction="", types=("pdf", "markdown"),
                        path="docs/", after=date(2024, 1, 2), before=date(2024, 3, 4))
    params = req.to_params()
    assert params == {"q": "wing lift", "mode": "keyword", "k": "5", "task": "SciFact", "type": ["pdf", "markdown"],
                      "path": "docs/", "after": "2024-01-02", "before": "2024-03-04"}
    assert SearchRequest.from_params(params) == req
    assert SearchRequest().to_params() == {}  # defaults stay out of the URL


def test_search_request_from_bad_parameters_keeps_defaults_and_says_why():
    req = SearchRequest.from_params({"q": " x ", "mode": "fuzzy", "k": "abc", "task": "nope", "type": ["exe", "md"],
                                     "after": "soon"})
    assert (req.query, req.mode, req.k, req.task, req.types, req.after) == ("x", DEFAULT_MODE, 10, "retrieval",
                                                                             ("markdown",), None)
    assert len(req.problems) == 5
    assert SearchRequest.from_params({"k": "100000"}).k == 100
    assert SearchRequest.from_params({"mode": "dense", "task": "scifact"}).mode == "semantic"
    assert SearchRequest.from_params({"task": "scifact"}).task == "SciFact"


def test_search_request_filters():
    assert SearchRequest(query="q").filters() is None
    f = SearchRequest(query="q", types=("pdf",), path="docs/*.md", after=date(2024, 1, 2),
                      before=date(2024, 1, 2)).filters()
    assert f.kinds == ("pdf",) and f.globs == ("docs/*.md",) and f.paths == ()
    assert f.modified_after == datetime(2024, 1, 2).timestamp()
    assert f.modified_before == datetime(2024, 1, 3).timestamp()  # "until" includes the whole day
    assert SearchRequest(query="q", path="docs").filters().paths == ("docs",)
    assert SearchRequest(query="q", instruction="Find music").instruction_text == "Find music"
    assert SearchRequest(query="q", mode="semantic").index_mode == "dense"


def test_highlighting_escapes_html_and_marks_spans():
    text = "a <b>bold</b> & lantern\n\nnext"
    out = highlight_html(text, [(16, 23)])
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; " in out and '<mark class="nv-hit">lantern</mark>' in out
    assert out.endswith("<br><br>next")
    assert "<br>" not in highlight_html(text, [], breaks=False)
    assert "</script>" not in js_string("</script><script>alert(1)</script>")


def test_upload_names_cannot_escape_the_uploads_folder():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert safe_name(".hidden.md") == "hidden.md"
    assert safe_name("") == "upload"
    assert human_bytes(512) == "512 B" and human_bytes(2048) == "2.0 KB"


def test_queries_run_on_one_torch_thread_and_other_threads_keep_the_default(monkeypatch):
    import threading

    import torch

    from app import threads

    default = torch.get_num_threads()
    monkeypatch.setenv("NVEMBED_QUERY_THREADS", "1")
    assert threads.run_query(torch.get_num_threads) == 1
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [default] and torch.get_num_threads() == default
    monkeypatch.setenv("NVEMBED_QUERY_THREADS", "0")
    assert threads.run_query(threading.current_thread) is threading.current_thread()


def test_markdown_escaping_keeps_code_spans():
    from app.render import md

    assert md("a_b *c* $x$ [l](u)") == "a\\_b \\*c\\* \\$x\\$ \\[l\\](u)"
    assert md("run `python -m index.ingest DOCS_DIR` now_") == "run `python -m index.ingest DOCS_DIR` now\\_"


def test_app_and_cli_share_the_measured_default_mode():
    from index.retrieval import DEFAULT_MODE as INDEX_DEFAULT
    from index.retrieval import SearchConfig
    from index.search import build_parser

    assert SearchRequest().index_mode == INDEX_DEFAULT == SearchConfig().mode
    assert build_parser().parse_args(["q"]).mode == INDEX_DEFAULT
