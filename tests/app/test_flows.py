"""The app's main flows through `AppTest` with the tiny random model: upload, search, URL, RAG, delete,
folder ingest, re-ingest, and resources loaded once."""

from __future__ import annotations

import os
import re

from .conftest import (
    alerts,
    button,
    documents_table,
    job_table,
    no_exception,
    open_tab,
    page_text,
    result_cards,
    search,
    upload,
)

UNIQUE_A = "The zebra quantum orchestra plays violet marble music every harbor evening."
UNIQUE_B = "A lantern galaxy hides behind the velvet mountain river near the ocean."
FILES = [
    ("alpha.txt", f"{UNIQUE_A}\n\nThe flight wing pressure boundary layer.".encode()),
    ("beta.md", f"# Beta notes\n\n{UNIQUE_B}\n\nA bank transfer refund error on my card account.".encode()),
]


def test_upload_two_files_search_then_delete_one(make_app, app_env):
    at = make_app().run()
    no_exception(at)
    upload(at, FILES)
    no_exception(at)
    assert any("2 added" in s for s in alerts(at, "success")), alerts(at, "success")
    rows = job_table(at)
    assert sorted(rows["file"]) == ["alpha.txt", "beta.md"] and set(rows["status"]) == {"added"}
    assert (app_env["uploads"] / "alpha.txt").read_bytes() == FILES[0][1]  # uploads are kept on disk
    docs = documents_table(at)
    assert len(docs) == 2 and {os.path.basename(p) for p in docs["path"]} == {"alpha.txt", "beta.md"}

    search(at, "lantern galaxy velvet", mode="hybrid")
    no_exception(at)
    cards = result_cards(at)
    assert cards and UNIQUE_B.split(" near")[0].replace("A lantern", "lantern") in cards[0]
    assert "beta.md" in cards[0]
    # hybrid is the default mode, which the URL leaves out
    assert at.query_params["q"] == "lantern galaxy velvet" and at.query_params.get("mode", "hybrid") == "hybrid"
    assert "mark" in next(h.value for h in at.html if "nv-rank" in h.value and "<style" not in h.value)  # the match is highlighted

    beta = str(app_env["uploads"] / "beta.md")
    open_tab(at, "documents")
    at.multiselect(key="doc_selected").set_value([beta]).run()
    button(at, "Delete…").click().run()
    assert any("Delete 1 document" in w for w in alerts(at, "warning"))  # asks first
    at.button(key="doc_confirm_delete").click().run()
    no_exception(at)
    assert any("Deleted 1 document" in s for s in alerts(at, "success"))
    docs = documents_table(at)
    assert list(map(os.path.basename, docs["path"])) == ["alpha.txt"]
    open_tab(at, "search")
    assert "lantern galaxy" not in "\n".join(result_cards(at))  # the search reran on the new index
    assert all("beta.md" not in c for c in result_cards(at))


def test_cancel_delete_keeps_the_document(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    path = str(app_env["uploads"] / "alpha.txt")
    open_tab(at, "documents")
    at.multiselect(key="doc_selected").set_value([path]).run()
    button(at, "Delete…").click().run()
    at.button(key="doc_cancel_delete").click().run()
    no_exception(at)
    assert len(documents_table(at)) == 2


def test_model_and_index_are_loaded_once(make_app, app_env):
    from app import state

    at = make_app().run()
    at.run()
    search(at, "zebra")
    no_exception(at)
    assert state.LOADS["model:tiny:None"] == 1
    assert state.LOADS[f"index:{app_env['index']}:tiny"] == 1


def test_sidebar_shows_model_index_and_where_data_is_kept(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    side = "\n".join(h.value for h in at.sidebar.html) + "\n".join(m.value for m in at.sidebar.markdown)
    for text in ("tiny-llama-0", "Dimension", "32", "Device", "cpu", "untrained", "Documents", "Passages",
                 "Size on disk", "Index type", "exact", str(app_env["index"]), str(app_env["uploads"])):
        assert text in side, text


def test_url_with_query_and_options_shows_results_and_fills_the_form(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    at2 = make_app(q="refund card", mode="keyword", k="1", type="markdown").run()
    no_exception(at2)
    cards = result_cards(at2)
    assert len(cards) == 1 and "beta.md" in cards[0]
    assert at2.text_input(key="s_query").value == "refund card"
    assert at2.segmented_control(key="s_mode").value == "keyword"
    assert at2.number_input(key="s_k").value == 1
    assert at2.multiselect(key="s_types").value == ["markdown"]
    at3 = make_app(q="refund card", mode="keyword", type="text").run()  # the filter excludes beta.md
    assert not result_cards(at3) and any("No results" in w for w in alerts(at3, "warning"))


def test_task_instruction_and_own_instruction_go_into_the_url(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    open_tab(at, "search")
    at.selectbox(key="s_task").set_value("SciFact")
    search(at, "zebra orchestra")
    assert at.query_params["task"] == "SciFact"
    assert "Given a scientific claim" in page_text(at)
    at.text_input(key="s_instruction").input("Find passages about music")
    button(at, "Search").click().run()
    assert at.query_params["instruction"] == "Find passages about music"
    assert "Find passages about music" in page_text(at)
    no_exception(at)


def test_rag_context_has_numbered_citations_and_downloads(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    search(at, "zebra orchestra harbor", mode="keyword")
    context = at.code[0].value
    assert context.startswith("[1] ") and "alpha.txt" in context and UNIQUE_A in context
    labels = [b.label for b in at.download_button]
    assert "Download .md" in labels and "Download .json" in labels
    at.number_input(key="rag_budget").set_value(64).run()
    assert len(at.code[0].value) < len(context) or "cut to fit" in page_text(at)
    no_exception(at)


def test_result_card_offers_full_passage_and_neighbours(make_app, app_env):
    long_doc = "\n\n".join(f"Section {i}. " + " ".join(["apple banana cherry river"] * 30) + f" marker{i}."
                           for i in range(6))
    at = make_app().run()
    upload(at, [("long.txt", long_doc.encode())])
    search(at, "marker3", mode="keyword")
    no_exception(at)
    labels = [e.label for e in at.expander]
    assert "Full passage" in labels and "Neighbouring passages" in labels
    text = page_text(at)
    assert "Before (passage" in text and "After (passage" in text
    assert "passage " in result_cards(at)[0] and " of " in result_cards(at)[0]


def test_folder_ingest_reports_each_file_and_prunes_vanished_ones(make_app, app_env):
    docs = app_env["docs"]
    (docs / "one.txt").write_text(UNIQUE_A)
    (docs / "two.md").write_text(f"# Two\n\n{UNIQUE_B}")
    (docs / "notes.xyz").write_text("not a supported type")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    at = open_tab(make_app().run(), "ingest")
    at.text_input(key="folder_path").input(str(docs))
    button(at, "Ingest folder").click().run()
    no_exception(at)
    rows = job_table(at)
    status = {os.path.basename(f): s for f, s in zip(rows["file"], rows["status"], strict=True)}
    assert status == {"one.txt": "added", "two.md": "added", "notes.xyz": "skipped",
                      "broken.pdf": "failed"}
    assert any("broken.pdf" in e and "could not be ingested" in e for e in alerts(at, "error"))
    assert len(documents_table(at)) == 2

    (docs / "two.md").unlink()
    open_tab(at, "ingest")
    at.text_input(key="folder_path").input(str(docs))
    button(at, "Ingest folder").click().run()
    rows = job_table(at)
    status = {os.path.basename(f): s for f, s in zip(rows["file"], rows["status"], strict=True)}
    assert status["one.txt"] == "unchanged" and status["two.md"] == "removed"
    assert list(map(os.path.basename, documents_table(at)["path"])) == ["one.txt"]


def test_reingest_selected_document(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    path = str(app_env["uploads"] / "alpha.txt")
    open_tab(at, "documents")
    at.multiselect(key="doc_selected").set_value([path]).run()
    button(at, "Re-ingest").click().run()
    for _ in range(100):  # the job runs in its thread; each run shows its progress, then its result
        if job_table(at) is not None and "re-ingest" in " ".join(alerts(at, "success")).lower():
            break
        at.run()
    no_exception(at)
    assert list(job_table(at)["status"]) == ["updated"]


def test_documents_filter_as_you_type(make_app, app_env):
    at = make_app().run()
    upload(at, FILES)
    open_tab(at, "documents")
    at.text_input(key="doc_filter").input("beta").run()
    docs = [d.value for d in at.dataframe if "ingested" in d.value.columns][0]
    assert list(map(os.path.basename, docs["path"])) == ["beta.md"]
    assert "1 of 2 documents" in page_text(at)
    at.text_input(key="doc_filter").input("markdown beta").run()  # every word must match
    assert len([d.value for d in at.dataframe if "ingested" in d.value.columns][0]) == 1
    at.text_input(key="doc_filter").input("nothing-like-this").run()
    assert len([d.value for d in at.dataframe if "ingested" in d.value.columns][0]) == 0
    no_exception(at)


FAQ_LINE = "To find memory leaks in a C program, run it under valgrind and read the leak summary at exit."


def test_near_duplicate_passages_of_a_file_are_one_card(make_app, app_env):
    sections = [f"## Question {n}\n\n{FAQ_LINE} " + " ".join(f"note{n}x{i}" for i in range(90)) for n in (1, 2)]
    faq = ("# FAQ\n\n" + "\n\n".join(sections)).encode()
    other = b"Certain common classes can compile C code: the compiler manual."
    at = make_app().run()
    upload(at, [("faq.md", faq), ("other.txt", other)])
    open_tab(at, "search")
    at.number_input(key="s_k").set_value(10)  # AppTest starts this widget at its minimum
    search(at, "memory leaks valgrind", mode="keyword")
    no_exception(at)
    cards = result_cards(at)
    assert sum("faq.md" in c for c in cards) == 1, cards  # two passages, one card
    assert "1 more from this file" in [e.label for e in at.expander]
    summary = next(h.value for h in at.html if "nv-results-summary" in h.value)
    assert "passages)" in summary  # "n results (m passages)"
    # whole words only: the one-letter "C" does not mark "Certain", "common", "classes", "can", "compile"
    search(at, "how do I find memory leaks in my C program", mode="keyword")
    marked = [m for h in at.html for m in re.findall(r"<mark[^>]*>([^<]+)</mark>", h.value)]
    assert marked and {m.lower() for m in marked} <= {"find", "memory", "leaks", "leak", "c", "program"}, marked
