"""The Ingest tab (upload files, or a folder on the server) and the job status strip above the tabs:
a progress bar with counts while a job runs, then a table with one row per file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:  # pandas is imported when a table is built: 1 s less before the first page
    import pandas as pd

from index.loaders import KINDS as SUPPORTED

from ..jobs import BusyError, Job, JobManager
from ..render import md, short_path
from ..security import PathNotAllowedError, allowed_roots, check_folder

STARTED_HERE = "_job_started_here"
SHOWN = "_job_shown"
UPLOAD_TYPES = sorted({ext.lstrip(".") for ext in SUPPORTED})


def render_forms(manager: JobManager, encoder: Any, source: str, uploads_dir: Path,
                 roots: tuple[Path, ...] | None = None) -> None:
    """The two ingest forms; folder ingest reads only under `roots` (default: the uploads folder)."""
    roots = allowed_roots(uploads_dir) if roots is None else roots
    busy = manager.busy
    if busy:
        st.info(f"An ingest is running ({md(manager.current.title)}); new ones can start when it is done. "
                "Searching works meanwhile.", icon=":material/hourglass_top:")
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("#### Upload files")
        st.caption(f"PDF, Word, HTML, Markdown or text. Kept in `{short_path(str(uploads_dir.resolve()))}`; "
                   "a file with the name of an earlier upload replaces it.")
        with st.form("upload", clear_on_submit=True, border=False):
            files = st.file_uploader("Documents", type=UPLOAD_TYPES, accept_multiple_files=True,
                                     label_visibility="collapsed")
            go = st.form_submit_button("Ingest uploaded files", type="primary", icon=":material/upload:",
                                       disabled=busy)
        if go:
            if not files:
                st.warning("Choose one or more files first.")
            else:
                _start(lambda: manager.ingest_uploads([(f.name, f.getvalue()) for f in files], uploads_dir,
                                                      encoder, source))
    with right:
        st.markdown("#### Ingest a folder on the server")
        st.caption("Every supported file under it, recursively. New files are added, changed ones re-embedded, "
                   "unchanged ones skipped, and documents whose files are gone from the folder are removed. "
                   "Only folders under " + ", ".join(f"`{short_path(str(r))}`" for r in roots)
                   + " can be read (start the app with `-- --allow-dir DIR` to add one).")
        with st.form("folder", border=False):
            folder = st.text_input("Folder", placeholder="/srv/docs or ./docs", label_visibility="collapsed",
                                   key="folder_path")
            go = st.form_submit_button("Ingest folder", icon=":material/folder_open:", disabled=busy)
        if go:
            path = (folder or "").strip()
            refused = None
            if path:
                try:
                    check_folder(path, roots)
                except PathNotAllowedError as exc:
                    refused = str(exc)
            if not path:
                st.warning("Type the path of a folder on the server first.")
            elif refused:
                st.error(f"Not allowed: {md(refused)} (`-- --allow-dir DIR` after `streamlit run app/main.py`).",
                         icon=":material/block:")
            elif not Path(path).expanduser().exists():
                st.error(f"The folder **{md(path)}** does not exist on the server "
                         f"(paths are read on the machine running the app; relative paths start at "
                         f"`{Path.cwd()}`).", icon=":material/folder_off:")
            else:
                _start(lambda: manager.ingest_folder(str(Path(path).expanduser()), encoder, source))


def _start(make_job: Any) -> Job | None:
    try:
        job = make_job()
    except BusyError as exc:
        st.warning(md(exc))
        return None
    st.session_state[STARTED_HERE] = job.id
    return job


def start_reingest(manager: JobManager, paths: list[str], encoder: Any, source: str) -> Job | None:
    return _start(lambda: manager.reingest(paths, encoder, source))


# ------------------------------------------------------------------------------------------- status ----
def _progress_text(job: Job) -> str:
    c = job.counts()
    total = f"{job.done}/{job.total} files" if job.total else "finding files…"
    counts = " · ".join(f"{c[s]} {s}" for s in ("added", "updated", "unchanged", "failed") if c[s])
    if job.passages_total:
        total += f", {job.passages_done}/{job.passages_total} passages embedded"
    current = f" — {job.current}" if job.current else ""
    return f"Ingesting {job.title}: {total}" + (f" · {counts}" if counts else "") + current


def _progress_value(job: Job) -> float:
    return job.fraction


def table(job: Job) -> pd.DataFrame:
    """One row per file, failures first."""
    import pandas as pd

    order = {"failed": 0, "skipped": 1, "removed": 2, "added": 3, "updated": 4, "unchanged": 5}
    outcomes = sorted(job.outcomes, key=lambda o: order.get(o.status, 9))
    return pd.DataFrame(
        [{"file": short_path(o.name), "status": o.status, "passages": o.passages,
          "reason": o.reason} for o in outcomes],
        columns=["file", "status", "passages", "reason"],
    )


def show_result(job: Job) -> None:
    failed = [o for o in job.outcomes if o.status == "failed"]
    head = f"**{md(job.title.capitalize())}** {'finished' if job.state == 'done' else job.state} in {job.elapsed:.1f} s: {job.summary()}."
    if job.state == "failed":
        st.error(f"The ingest stopped: {md(job.error)}", icon=":material/error:")
    elif failed:
        st.warning(head, icon=":material/warning:")
    elif job.state == "stopped":
        st.info(head + " Stopped on request; everything finished so far is kept.", icon=":material/stop_circle:")
    else:
        st.success(head, icon=":material/check_circle:")
    for o in failed[:5]:
        st.error(f"**{md(Path(o.name).name)}** could not be ingested: {md(o.reason)}", icon=":material/block:")
    if len(failed) > 5:
        st.caption(f"…and {len(failed) - 5} more failures, listed in the table.")
    if job.note:
        st.caption(md(job.note))
    if job.outcomes:
        with st.expander(f"Files ({len(job.outcomes)})", expanded=len(job.outcomes) <= 20 or bool(failed)):
            st.dataframe(table(job), hide_index=True, width="stretch", column_config={
                "file": st.column_config.TextColumn("File", width="large"),
                "status": st.column_config.TextColumn("Status", width="small"),
                "passages": st.column_config.NumberColumn("Passages", width="small"),
                "reason": st.column_config.TextColumn("Reason", width="large"),
            })
    if st.button("Dismiss", key=f"dismiss_{job.id}", type="tertiary", icon=":material/close:"):
        st.session_state[SHOWN] = None
        st.rerun()


@st.fragment(run_every=0.8)
def _poll(directory: str, job_id: int) -> None:
    from ..state import job_manager

    job = job_manager(directory).get(job_id)
    if job is None:
        return
    if job.running:
        st.progress(_progress_value(job), text=_progress_text(job))
        st.button("Stop after the current file", key=f"stop_{job.id}", icon=":material/stop:",
                  on_click=job.stop_requested.set)
    else:
        st.session_state[SHOWN] = job.id
        st.rerun()  # the whole page: sidebar counts, documents and results change


def render_status(manager: JobManager) -> None:
    """Above the tabs: the running job's progress, or the last finished job's result for this session."""
    started_here = manager.get(st.session_state.pop(STARTED_HERE, None))
    job = manager.current
    if job is not None and job.running:
        st.session_state[SHOWN] = job.id
        if started_here is job:
            # Started by this run: follow it here, live, until it ends (a rerun, e.g. a search, leaves the
            # job running in its thread and the poller below takes over).
            bar = st.progress(_progress_value(job), text=_progress_text(job))
            st.button("Stop after the current file", key=f"stop_{job.id}", icon=":material/stop:",
                      on_click=job.stop_requested.set)
            while job.running:
                time.sleep(0.25)
                bar.progress(_progress_value(job), text=_progress_text(job))
            st.rerun()
        else:
            _poll(str(manager.directory), job.id)
        return
    shown = manager.get(st.session_state.get(SHOWN))
    if shown is not None:
        with st.container(border=True):
            show_result(shown)
