"""Streamlit entry point (`streamlit run app/main.py`). A first page that embeds text with the default
model; the full ingest-and-search app replaces it."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import INSTRUCTIONS, NVEmbedModel  # noqa: E402


@st.cache_resource(show_spinner="Loading the embedding model (the first start converts it, about a minute)...")
def load_model(name: str) -> NVEmbedModel:
    return NVEmbedModel.from_pretrained(name)


st.set_page_config(page_title="NV-Embed search", layout="wide")
st.title("NV-Embed search")
model = load_model("default")
st.sidebar.markdown(
    f"**Model** {model.name}  \n**Dimension** {model.dimension}  \n**Device** {model.device}  \n"
    f"**Trained** {'yes' if model.trained else 'no (latent layer untrained)'}"
)
task = st.selectbox("Task instruction", list(INSTRUCTIONS), index=0)
query = st.text_input("Query", "how do wings produce lift?")
passages = st.text_area("Passages, one per line", "Wings produce lift by deflecting air downwards.\nBanana bread needs ripe bananas.")
if query and passages.strip():
    lines = [p for p in passages.splitlines() if p.strip()]
    scores = model.encode_queries([query], task) @ model.encode_passages(lines).T
    st.table({"passage": lines, "score": [f"{s:.3f}" for s in scores[0]]})
