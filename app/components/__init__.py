"""The page's parts: each module renders one area from data the facade returns (no index logic here)."""

#: The tabs' widget key and labels (the active label is in `st.session_state[TAB_KEY]`).
TAB_KEY = "tab"
TABS = {"search": ":material/search: Search", "ingest": ":material/upload_file: Ingest",
        "documents": ":material/folder: Documents"}
