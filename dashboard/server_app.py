"""The dashboard's web server: Streamlit's own, running dashboard/app.py for every browser
session, plus the routes that set and clear the session cookie (dashboard.session_cookie).

`bearwatch dashboard` starts it through Streamlit's command line (dashboard.serve):
`streamlit run` finds the ``st.App`` below and serves it with uvicorn. Streamlit imports
this file as a top-level module, so it holds nothing but the app.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.session_cookie import session_routes

app = st.App(Path(__file__).resolve().with_name("app.py"), routes=session_routes())
