"""A Streamlit client that skips the UI: it speaks the dashboard's websocket protocol
(protobuf BackMsg / ForwardMsg on /_stcore/stream) directly, as an attacker's script
would, so tests can send messages the browser never sends on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import ClientConnection, connect


@dataclass
class Screen:
    """What one script run put on the page: widget ids by label, and alert texts."""

    widget_ids: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class RawClient:
    """A Streamlit client that skips the browser; use it as ``with RawClient(url) as client``."""

    def __init__(self, base_url: str) -> None:
        self._url = base_url.replace("http", "ws", 1) + "/_stcore/stream"

    def __enter__(self) -> RawClient:
        # websockets >= 17.1 wants connect() entered as a context manager.
        self._connection = connect(self._url, subprotocols=["streamlit"], open_timeout=30)  # type: ignore[list-item]
        self._ws: ClientConnection = self._connection.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._connection.__exit__(None, None, None)

    def clear_cache(self) -> None:
        """What Streamlit's "Clear cache" menu sends; honoured from any client."""
        self._ws.send(BackMsg(clear_cache=True).SerializeToString())

    def run(self, widgets: list[WidgetState] | None = None, timeout_s: float = 60) -> Screen:
        """Rerun the script with ``widgets``' values and collect the page it draws."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.widget_states.widgets.extend(widgets or [])
        self._ws.send(msg.SerializeToString())
        screen = Screen()
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self._ws.recv(timeout=timeout_s))
            if forward.WhichOneof("type") == "script_finished":
                return screen
            if forward.WhichOneof("type") == "delta" and forward.delta.WhichOneof("type") == "new_element":
                _read_element(forward.delta.new_element, screen)


def _read_element(element: object, screen: Screen) -> None:
    kind = element.WhichOneof("type")  # type: ignore[attr-defined]
    value = getattr(element, kind) if kind else None
    if kind in ("text_input", "button") and value is not None:
        screen.widget_ids[value.label] = value.id
    elif kind == "alert" and value is not None:
        screen.alerts.append(value.body)
    elif kind == "markdown" and value is not None:
        screen.texts.append(value.body)


def text(widget_id: str, value: str) -> WidgetState:
    return WidgetState(id=widget_id, string_value=value)


def click(widget_id: str) -> WidgetState:
    return WidgetState(id=widget_id, trigger_value=True)
