"""The backtest's self-contained HTML report: numbers, gate checks and a gallery of the
worst disagreements with base64-embedded thumbnails (no external files or scripts)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from PIL import Image

from shadow.agreement import Rate
from shadow.backtest import BacktestReport

THUMB = (240, 180)


def thumbnail_data_uri(path: Path) -> str | None:
    try:
        with Image.open(path) as src:
            im = src.convert("RGB")
            im.thumbnail(THUMB)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}f}"


def _ci(rate: Rate) -> str:
    return f"{_fmt(rate.value)} (95% CI {_fmt(rate.ci.low)}–{_fmt(rate.ci.high)})" if rate.ci else "–"


def render_html(report: BacktestReport, frames_root: Path) -> str:
    e = html.escape
    a = report.agreement
    c = a.confusion
    rows = [
        ("frames replayed", f"{report.frames} ({len(report.failed)} could not be read)"),
        ("flagged", str(report.flagged)),
        ("alerts it would have sent", str(report.alerts)),
        ("precision", _ci(a.precision)),
        ("recall", _ci(a.recall)),
        ("confusion (tp / fp / fn / tn, disputed)", f"{c.tp} / {c.fp} / {c.fn} / {c.tn}, {c.disputed}"),
        ("inter-ranger kappa", f"{_fmt(a.kappa)} on {a.kappa_frames} frames"),
    ]
    if report.rate is not None:
        r = report.rate.test
        rows.append(("alert rate vs manual baseline",
                     f"ratio {_fmt(r.ratio, 2)} (95% CI {_fmt(r.ci.low, 2)}–{_fmt(r.ci.high, 2)}); {r.x1} alerts / "
                     f"{r.t1:.0f} camera-h vs {r.x0} sightings / {r.t0:.0f} camera-h; p(outside [{r.low:g}, {r.high:g}]) = {r.p_outside:.3g}"))
    else:
        rows.append(("alert rate vs manual baseline", "no baseline (no manual period with camera-hours)"))
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    checks = "\n".join(
        f"<tr class='{e(ch.outcome.value)}'><td>{e(ch.name)}</td><td>{e(ch.outcome.value)}</td><td>{e(ch.detail)}</td></tr>"
        for ch in report.gate
    )
    cards = []
    for d in report.worst:
        uri = thumbnail_data_uri(frames_root / d.frame.path)
        img = f"<img src='{uri}' alt='frame {d.frame.frame_id}'>" if uri else "<div class='missing'>image missing</div>"
        cards.append(
            f"<figure>{img}<figcaption>frame {d.frame.frame_id}, camera {d.frame.camera_id}, "
            f"{e(d.frame.captured_at.strftime('%Y-%m-%d %H:%M'))}Z<br>rangers: <b>{e(d.truth.value.replace('_', ' '))}</b>, "
            f"score {d.frame.score:.3f} ({'flagged' if d.frame.flagged else 'not flagged'}), loss {d.loss:.2f}</figcaption></figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest {e(report.site)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.pass td:nth-child(2) {{ color: #176b2c; }} tr.fail td:nth-child(2) {{ color: #a11; font-weight: bold; }}
tr.inconclusive td:nth-child(2) {{ color: #8a6d00; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 240px; font-size: 0.85em; }} img {{ display: block; max-width: 240px; }}
</style></head><body>
<h1>Backtest of {e(Path(report.model_path).name)} on site {e(report.site)}</h1>
<p>Frames captured {e(report.start.isoformat())} to {e(report.end.isoformat())}; positive class(es)
{e(', '.join(report.positive))}; threshold {report.threshold:g}.</p>
<h2>What it would have done</h2>
<table>{table}</table>
<h2>Gate manual → limited on these numbers: {e(report.gate_outcome.value)}</h2>
<table><tr><th>check</th><th>outcome</th><th>detail</th></tr>{checks}</table>
<h2>Worst disagreements (highest loss first)</h2>
<div class="gallery">{''.join(cards) or '<p>no reviewed frames</p>'}</div>
</body></html>
"""
