"""Single-key shortcuts for buttons. Streamlit has no key bindings of its own: this adds
one keydown listener to the page that clicks the button whose widget key is bound to
the pressed letter (Streamlit puts `st-key-<key>` on every keyed widget's container).
Keys typed into a text field, or with Ctrl/Alt/Meta, are left alone; a disabled button
is not clicked. Rendering it again replaces the previous listener."""

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
    const button = doc.querySelector(".st-key-" + key + " button");
    if (!button || button.disabled) return;
    ev.preventDefault();
    button.click();
  };
  doc.addEventListener("keydown", doc.bwShortcuts);
})();
</script>""" % json.dumps(dict(bindings))


def bind_keys(bindings: Mapping[str, str]) -> None:
    st.html(shortcut_script(bindings), unsafe_allow_javascript=True)
