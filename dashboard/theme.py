"""The ranger pages' dark theme, for night shifts: a sidebar toggle (key t) remembered per
user (users.preferences, like the Review page's site), applied by CSS on the app's root.
Streamlit's own theme is set once per server (config.toml) and cannot change per user at
run time, so the dark look is a style sheet injected on the pages a ranger works on at
night (Review, History, Live wall, Latest frames); ops and admin pages keep the server's
theme."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bearwatch.users import preferences

THEME_PREFERENCE = "theme"  # the users.preferences key: "dark" or "light"
THEMED_PAGES = frozenset({"live", "review", "history", "latest"})  # url paths (dashboard.app.PAGES)

DARK_CSS = """<style>
.stApp, [data-testid="stHeader"], [data-testid="stMain"], [data-testid="stBottomBlockContainer"] {
  background-color: #0e1117 !important; color: #e3e6eb !important; }
[data-testid="stSidebar"], [data-testid="stSidebar"] > div { background-color: #161b24 !important; }
.stApp h1, .stApp h2, .stApp h3, .stApp p, .stApp li, .stApp label, .stApp small,
.stApp [data-testid="stMarkdownContainer"], .stApp [data-testid="stCaptionContainer"],
.stApp [data-testid="stWidgetLabel"], .stApp [data-testid="stSidebarNavLink"] span { color: #e3e6eb !important; }
.stApp button[kind="secondary"], .stApp button[data-testid="stBaseButton-secondary"] {
  background-color: #232a36 !important; color: #f2f4f7 !important; border-color: #465063 !important; }
.stApp [data-baseweb="select"] > div, .stApp input, .stApp textarea {
  background-color: #232a36 !important; color: #f2f4f7 !important; border-color: #465063 !important; }
.stApp [data-baseweb="popover"] ul, .stApp [data-baseweb="popover"] li { background-color: #232a36 !important; color: #f2f4f7 !important; }
.stApp a { color: #8ab4ff !important; }
.stApp [data-testid="stAlertContainer"] { background-color: #1d2a3a !important; }
.stApp [data-testid="stAlertContainer"]:has([data-testid="stAlertContentWarning"]) { background-color: #3a3114 !important; }
.stApp [data-testid="stAlertContainer"]:has([data-testid="stAlertContentSuccess"]) { background-color: #163522 !important; }
.stApp [data-testid="stAlertContainer"]:has([data-testid="stAlertContentError"]) { background-color: #451b1b !important; }
</style>"""


def remembered_dark(session: Session, user: str) -> bool:
    """Whether the user last chose the dark theme."""
    return preferences(session, user).get(THEME_PREFERENCE) == "dark"
