"""The sidebar: the model, the index and where data is kept."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ..config import AppConfig
from ..render import esc, human_bytes, md, stats_grid

VECTOR_KINDS = {"flat": ("exact", "FAISS flat inner-product index"), "ivf": ("approximate", "FAISS IVF index")}


def model_cache_dir() -> str:
    try:
        from encoder.default import cache_dir

        return str(cache_dir())
    except Exception:  # the encoder package is optional for stand-in models
        return "~/.cache/nvembed-search"


def render(cfg: AppConfig, source: str, encoder: Any = None, stats: Any = None, model_error: str | None = None,
           model_loading: bool = False, into: Any = None) -> None:
    """Draw the sidebar, or into `into` (a container in it, so that a later call of the run can redraw it)."""
    sb = into if into is not None else st.sidebar
    sb.markdown("### Model")
    if encoder is not None:
        trained = bool(getattr(encoder, "trained", True))
        sb.html(f"<div class='nv-model'>{esc(encoder.name)}</div>"
                    + stats_grid([("Dimension", f"{int(encoder.dimension):,}"),
                                  ("Device", str(getattr(encoder, "device", "cpu")))]))
        if trained:
            sb.badge("trained", icon=":material/check_circle:", color="green")
        else:
            sb.badge("untrained pooling layer", icon=":material/warning:", color="orange",
                     help="The latent-attention layer of this model has not been trained yet: semantic "
                          "results are weak. Keyword and hybrid search are unaffected by it.")
        sb.caption(f"source `{source}` · fingerprint `{encoder.fingerprint}`")
    elif model_loading:
        sb.info(f"Loading `{md(source)}`… Keyword search works meanwhile; a semantic or hybrid search waits "
                "for it.", icon=":material/hourglass_top:")
    else:
        sb.error(md(model_error or "no model loaded"))

    sb.markdown("### Index")
    if stats is not None:
        kind, detail = VECTOR_KINDS.get(stats.vector_kind, (stats.vector_kind, ""))
        sb.html(stats_grid([("Documents", f"{stats.documents:,}"), ("Passages", f"{stats.chunks:,}"),
                                ("Size on disk", human_bytes(stats.disk_bytes)), ("Index type", kind)]))
        sb.caption(f"{detail}, searched on {stats.search_device} · {stats.chunking.get('chunk_tokens')}-token "
                   f"passages with {stats.chunking.get('overlap_tokens')} overlap")
    else:
        sb.caption("not open")

    sb.markdown("### Where data is kept")
    paths = cfg.describe()
    sb.html(
        f"<div class='nv-label'>Index</div><div class='nv-path'>{esc(paths['index'])}</div>"
        f"<div class='nv-label' style='margin-top:.4rem'>Uploaded files</div>"
        f"<div class='nv-path'>{esc(paths['uploads'])}</div>"
        f"<div class='nv-label' style='margin-top:.4rem'>Model cache</div>"
        f"<div class='nv-path'>{esc(model_cache_dir())}</div>")
    sb.caption("Set with `--index`, `--uploads`, `--model` after `--` on the command line, or the "
               "`NVEMBED_*` environment variables (see the README).")
    if cfg.unknown_args:
        sb.warning(f"Ignored unknown app arguments: {md(' '.join(cfg.unknown_args))}")
