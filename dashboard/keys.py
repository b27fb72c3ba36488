"""Single-key shortcuts for buttons and toggles. Streamlit has no key bindings of its own:
this adds one keydown listener to the page that clicks the button (or the toggle's
input) whose widget key is bound to the pressed letter (Streamlit puts `st-key-<key>` on
every keyed widget's container). Keys typed into a text field, or with Ctrl/Alt/Meta,
are left alone; a disabled button or toggle is not clicked. Rendering it again replaces
the previous listener: the app's own keys (the sidebar's, :func:`bind_app_keys`) are
merged into every page's :func:`bind_keys`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import streamlit as st

_KEY = re.compile(r"^[a-z0-9_]+$")


def shortcut_script(bindings: Mapping[str, str]) -> str:
    """``bindings``: a single letter -> a button's widget key."""
    for letter, key in bindings.items():
        if len(letter) != 1 or not _KEY.match(letter) or not _KEY.match(key):
            raise ValueError(f"bad shortcut {letter!r} -> {key!r}")
    return """<script>
(() => {
  const doc = window.parent.document;
  const keys = %s;
  if (doc.bwShortcuts) doc.removeEventListener("keydown", doc.bwShortcuts);
  doc.bwShortcuts = (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const key = keys[(ev.key || "").toLowerCase()];
    if (!key) return;
    const box = doc.querySelector(".st-key-" + key);
    if (!box) return;
    // A toggle or checkbox: its input takes the click (its help "?" is a button too).
    const target = box.querySelector("input[type=checkbox]") || box.querySelector("button");
    if (!target || target.disabled) return;
    ev.preventDefault();
    target.click();
  };
  doc.addEventListener("keydown", doc.bwShortcuts);
})();
</script>""" % json.dumps(dict(bindings))


_APP_KEYS = "bw_app_keys"


def bind_app_keys(bindings: Mapping[str, str]) -> None:
    """The keys of the app around the pages (the sidebar's), bound now and kept in every
    page's :func:`bind_keys` of this run."""
    st.session_state[_APP_KEYS] = dict(bindings)
    bind_keys({})


def bind_keys(bindings: Mapping[str, str]) -> None:
    merged = {**st.session_state.get(_APP_KEYS, {}), **bindings}
    st.html(shortcut_script(merged), unsafe_allow_javascript=True)
