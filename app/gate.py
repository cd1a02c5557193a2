"""The app's door: refuse to serve on a network address without a password, and ask for it when one is set.

Streamlit itself has no login for a plain `streamlit run`. The checked-in `.streamlit/config.toml` binds it to
127.0.0.1; when it is started on another address (`--server.address 0.0.0.0`, or from a directory without that
file, where Streamlit listens on every interface) every page shows a refusal unless `$NVEMBED_APP_PASSWORD` is
set, and then the page asks for that password once per browser session before anything else is shown.
"""

from __future__ import annotations

import streamlit as st

from .render import md
from .security import APP_PASSWORD_ENV, is_loopback, password_matches

ADMITTED = "_nv_admitted"


def bound_address() -> str:
    """The address Streamlit listens on; an empty setting means every interface."""
    return str(st.get_option("server.address") or "0.0.0.0")


def admitted(password: str | None) -> bool:
    """True when the page may be shown; otherwise it renders the refusal or the password form."""
    address = bound_address()
    if password is None:
        if is_loopback(address):
            return True
        st.error(
            f"**Refusing to serve on {md(address)} without a password.** This address can be reached from the "
            f"network. Set `{APP_PASSWORD_ENV}` and restart, or run the app on 127.0.0.1 (the default from the "
            "repository root, set in `.streamlit/config.toml`).", icon=":material/lock:")
        return False
    if st.session_state.get(ADMITTED):
        return True
    with st.form("login", border=True):
        st.markdown("#### Password")
        given = st.text_input("Password", type="password", label_visibility="collapsed", key="_nv_password")
        go = st.form_submit_button("Enter", type="primary", icon=":material/login:")
    if go:
        if password_matches(password, given):
            st.session_state[ADMITTED] = True
            st.session_state.pop("_nv_password", None)
            st.rerun()
        st.error("Wrong password.", icon=":material/lock:")
    return False
