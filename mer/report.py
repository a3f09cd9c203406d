"""Reports for analysed videos: CSVs, a Plotly timeline, a self-contained HTML page, the folder index.

Files are written through mer.files (atomic_write, write_csv: atomic, CSV cells escaped). Content is
deterministic (fixed div ids, no dates): the same analysis always gives byte-identical files.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from .files import atomic_write, write_csv

if TYPE_CHECKING:  # pandas, OpenCV and Plotly load on first use
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

SUMMARY_COLUMNS = ["video", "status", "error", "duration_s", "frames", "fps", "faces", "dominant_class",
                   "intervals", "seconds", "report"]
PLOTLY_JS = "plotly.min.js"
COLORS = ["#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2", "#FF9DA6",
          "#9D755D", "#BAB0AC"]
INTERVAL_COLORS = {"micro": "#E45756", "macro": "#4C78A8"}


def _plotly_tag(plotlyjs: bool | str) -> str:
    if plotlyjs is True:
        from plotly.offline import get_plotlyjs
        return f'<script type="text/javascript">{get_plotlyjs()}</script>'
    if isinstance(plotlyjs, str):
        return f'<script src="{html.escape(plotlyjs)}"></script>'
    return ""


def write_plotly_js(out_dir: str | Path) -> Path:
    """OUT_DIR/plotly.min.js, once, for reports that reference it (the folder opens offline)."""
    from plotly.offline import get_plotlyjs
    p = Path(out_dir) / PLOTLY_JS
    js = get_plotlyjs()
    if not p.is_file() or p.stat().st_size != len(js.encode("utf-8")):
        atomic_write(p, js)
    return p


def timeline_figure(result, max_faces: int = 4, max_points: int = 4000) -> go.Figure:
    """Stacked class probabilities per face (spotted intervals shaded), then face count,
    detection probability and motion score tracks, all against time in seconds."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    df, classes = result.frames, list(result.classes)
    faces = df[df["face_id"].notna()]
    ids = [int(i) for i in faces["face_id"].value_counts().sort_index().index][:max_faces]
    rows = len(ids) + 3
    titles = [f"face {i}: class probabilities" for i in ids] + ["faces in frame", "detection probability",
                                                                 "motion score"]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=titles, row_heights=[2] * len(ids) + [1, 1, 1])
    step = lambda d: d.iloc[::max(1, int(np.ceil(len(d) / max_points)))]  # noqa: E731
    for r, fid in enumerate(ids, start=1):
        g = step(faces[faces["face_id"] == fid])
        for k, c in enumerate(classes):
            fig.add_trace(go.Scatter(x=g["time_s"], y=g[f"p_{c}"], name=c, legendgroup=c, mode="lines",
                                     stackgroup=f"f{fid}", line=dict(width=0.5, color=COLORS[k % len(COLORS)]),
                                     showlegend=r == 1), row=r, col=1)
        for _, iv in result.intervals[result.intervals["face_id"] == fid].iterrows():
            kind = str(iv.get("type", "micro"))  # spotted intervals: colour by type, label with the class
            label = f"{kind} {'' if pd.isna(iv.get('class')) else iv.get('class')}".strip()
            fig.add_vrect(x0=iv["onset_s"], x1=iv["offset_s"], fillcolor=INTERVAL_COLORS.get(kind, "black"),
                          opacity=0.25, line_width=0, annotation_text=html.escape(label),
                          annotation_position="top left", annotation_font_size=9, row=r, col=1)
        fig.update_yaxes(range=[0, 1], row=r, col=1)
    counts = df.groupby("frame").agg(t=("time_s", "first"), n=("face_id", "count"))
    fig.add_trace(go.Scatter(x=step(counts)["t"], y=step(counts)["n"], name="faces", mode="lines",
                             line=dict(shape="hv", color="#333"), showlegend=False), row=len(ids) + 1, col=1)
    for k, fid in enumerate(ids):
        g = step(faces[faces["face_id"] == fid])
        col = COLORS[(k + 6) % len(COLORS)]
        fig.add_trace(go.Scatter(x=g["time_s"], y=g["det_prob"], name=f"face {fid}", legendgroup=f"face{fid}",
                                 mode="lines", line=dict(color=col)), row=len(ids) + 2, col=1)
        fig.add_trace(go.Scatter(x=g["time_s"], y=g["motion"], name=f"face {fid} motion", legendgroup=f"face{fid}",
                                 mode="lines", line=dict(color=col), showlegend=False), row=len(ids) + 3, col=1)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    fig.update_layout(height=220 * len(ids) + 420, margin=dict(l=50, r=20, t=40, b=40),
                      template="plotly_white", legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def _png_b64(rgb: np.ndarray) -> str:
    import cv2
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", escape=True, border=0, classes="tbl")


STYLE = ("<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
         ".tbl{border-collapse:collapse;font-size:13px}.tbl td,.tbl th{padding:3px 8px;border-bottom:1px solid #ddd}"
         ".thumbs figure{display:inline-block;margin:4px;text-align:center;font-size:12px}</style>")


def _spotting(info: dict) -> tuple[str, dict]:
    """The spotting method an analysis ran (mer.spotting.SpotConfig.method) and, for "auto", the
    scorer each face track got ({face id: "ecc" | "flow"}), from its info."""
    method = str(((info.get("settings") or {}).get("spotting") or {}).get("method", ""))
    return method, (info.get("motion_by") or {})


def spot_method(info: dict) -> str:
    """The motion scorer an analysis spotted with, for "auto" also the one each face track got,
    e.g. "auto: face 0 flow"."""
    method, by = _spotting(info)
    if method != "auto" or not by:
        return method
    return "auto: " + ", ".join(f"face {k} {v}" for k, v in sorted(by.items(), key=lambda kv: int(kv[0])))


def spot_caveat(info: dict) -> str:
    """What the scorers this analysis spotted with were measured to find (mer.spotting.MEASURED), in
    one sentence: spotted intervals are where a face moved and came back, not verified expressions."""
    from mer.spotting import MEASURED
    method, by = _spotting(info)
    used = sorted(set(by.values())) if method == "auto" else [method]
    said = [f"{m}, {MEASURED[m]}" for m in used if m in MEASURED]
    if not said:
        return ""
    return ("Spotted intervals mark where a face moved and came back, not verified expressions. Measured: "
            + "; ".join(said) + " (docs/spotting.md).")


def video_html(result, plotlyjs: bool | str = True) -> str:
    import pandas as pd
    info = result.info
    title = html.escape(Path(result.path).name)
    meta = pd.DataFrame([{**{k: info.get(k) for k in ("n_frames", "fps", "duration_s", "width", "height",
                                                         "n_faces", "dominant_class", "n_intervals")},
                          "spot_method": spot_method(info)}])
    thumbs = "".join(f'<figure><img alt="face {fid} frame {fr}" src="data:image/png;base64,{_png_b64(c)}">'
                     f"<figcaption>face {fid}, frame {fr}</figcaption></figure>"
                     for fr, fid, c in result.thumbnails)
    fig = timeline_figure(result).to_html(full_html=False, include_plotlyjs=False, div_id="timeline")
    fig += "<h2>AU proxies over time</h2>" + au_heatmap_figure(result).to_html(
        full_html=False, include_plotlyjs=False, div_id="aus")
    iv = result.intervals
    caveat = spot_caveat(info) if info.get("n_faces") else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>{STYLE}"
            f"{_plotly_tag(plotlyjs)}</head><body><h1>{title}</h1>{_table(meta)}"
            f"<h2>Timeline</h2>{fig}<h2>Spotted intervals ({len(iv)})</h2>"
            + (f"<p class='caveat'>{html.escape(caveat)}</p>" if caveat else "")
            + (f"{_table(iv)}<h2>Apex frames</h2><div class='thumbs'>{thumbs or '<p>no faces</p>'}</div>"
               if len(iv) else "<p>none</p>")  # no intervals: no apex frames to show
            + "</body></html>\n")


def write_video_report(result, out_dir: str | Path, stem: str, plotlyjs: bool | str = True) -> dict[str, Path]:
    """<stem>.frames.csv, <stem>.intervals.csv and <stem>.html in out_dir (each atomic), and
    <stem>.landmarks.npz when the result kept landmarks (frame, face_id, landmarks (K, 478, 3),
    presence, interpolated).

    plotlyjs: True embeds plotly.js in the page; a string is used as the script's src (relative
    path to a shared plotly.min.js, see write_plotly_js)."""
    out_dir = Path(out_dir)
    paths = {"frames": out_dir / f"{stem}.frames.csv", "intervals": out_dir / f"{stem}.intervals.csv",
             "html": out_dir / f"{stem}.html"}
    write_csv(result.frames, paths["frames"])
    write_csv(result.intervals, paths["intervals"])
    if getattr(result, "landmarks", None) is not None:  # VideoSettings.landmarks: 478 landmarks per face and frame
        import io
        import numpy as np
        paths["landmarks"] = out_dir / f"{stem}.landmarks.npz"
        buf = io.BytesIO()
        np.savez_compressed(buf, **result.landmarks)
        atomic_write(paths["landmarks"], buf.getvalue())
    atomic_write(paths["html"], video_html(result, plotlyjs))
    return paths


STATUS_ORDER = {"failed": 0, "partial": 1, "pending": 2, "done": 3}  # index.html: problems first

INDEX_STYLE = ("<style>#controls{margin:.6em 0}#controls input{width:22em}.tbl th{cursor:pointer;text-align:left;"
               "background:#f4f4f4;position:sticky;top:0}.tbl th[aria-sort=ascending]::after{content:' \u25b2'}"
               ".tbl th[aria-sort=descending]::after{content:' \u25bc'}tr.failed td{background:#fde8e8}"
               "tr.partial td{background:#fff4d6}.ov{width:100%;height:340px}</style>")

# Sort (click a column head; numbers as numbers; again to reverse) and filter (text in any cell,
# status) the rows; the overview's three Plotly figures are drawn from the rows themselves, so the
# page holds each value once and the only value that differs between runs (seconds taken) stays in
# its cells.
INDEX_JS = r"""<script>
(function(){
var tbody=document.querySelector('#videos tbody'), heads=document.querySelectorAll('#videos th');
var rows=Array.prototype.slice.call(tbody.rows);
function val(r,i){var t=r.cells[i].textContent.trim(), n=parseFloat(t);
  return (t!==''&&isFinite(t))?n:t.toLowerCase();}
heads.forEach(function(th,i){th.addEventListener('click',function(){
  var asc=th.getAttribute('aria-sort')!=='ascending';
  heads.forEach(function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  rows.sort(function(a,b){var x=val(a,i),y=val(b,i);
    if(x===''&&y!=='')return 1; if(y===''&&x!=='')return -1;
    if(typeof x!==typeof y){x=String(x);y=String(y);}
    return (x<y?-1:x>y?1:0)*(asc?1:-1);});
  rows.forEach(function(r){tbody.appendChild(r);});});});
var q=document.getElementById('filter'), st=document.getElementById('status');
function filter(){var t=q.value.toLowerCase(), s=st.value, n=0;
  rows.forEach(function(r){var show=(!s||r.dataset.status===s)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
    r.style.display=show?'':'none'; n+=show;});
  document.getElementById('shown').textContent=n+' of '+rows.length+' shown';}
q.addEventListener('input',filter); st.addEventListener('change',filter); filter();
if(!window.Plotly)return;
var col={}; heads.forEach(function(h,i){col[h.textContent.trim()]=i;});
var done=rows.filter(function(r){return r.dataset.status==='done'||r.dataset.status==='partial';});
var names=done.map(function(r){return r.cells[0].textContent;}), classes=[], shares=done.map(function(r){
  var s=JSON.parse(r.dataset.shares||'{}'); Object.keys(s).forEach(function(c){if(classes.indexOf(c)<0)classes.push(c);});
  return s;});
var num=function(r,c){var v=parseFloat(r.cells[col[c]].textContent);return isFinite(v)?v:null;};
var lay=function(t,y){return {title:t,barmode:'stack',margin:{l:50,r:10,t:40,b:90},yaxis:{title:y},
  xaxis:{automargin:true,tickangle:-45},template:'plotly_white',legend:{orientation:'h'}};};
var cfg={displaylogo:false,responsive:true};
Plotly.newPlot('ov-shares',classes.map(function(c){return {type:'bar',name:c,x:names,
  y:shares.map(function(s){return s[c]||0;})};}),lay('Class shares per video (frames with a face, by top class)','share'),cfg);
Plotly.newPlot('ov-rate',[{type:'bar',x:names,y:done.map(function(r){var n=num(r,'intervals'),d=num(r,'duration_s');
  return (n===null||!d)?null:n/d*60;}),marker:{color:'#E45756'}}],lay('Spotted intervals per minute of video','per minute'),cfg);
Plotly.newPlot('ov-secs',[{type:'bar',x:names,y:done.map(function(r){return num(r,'seconds');}),
  marker:{color:'#4C78A8'}}],lay('Seconds taken per video','s'),cfg);
})();
</script>"""


def write_index(rows: list[dict], out_dir: str | Path, plotlyjs: bool | str = PLOTLY_JS) -> dict[str, Path]:
    """OUT_DIR/summary.csv (one row per video, in the order given) and OUT_DIR/index.html: failed
    videos first, then partial ones (each with its reason), then pending and done; every column
    sortable, a text and a status filter, links to every report, and a folder overview (class
    shares per video, intervals per minute, seconds per video) drawn with plotly.js (by default
    OUT_DIR/plotly.min.js, write_plotly_js: the page opens offline). A row may carry
    `class_shares` ({class: share of the frames with a face}) for the overview.

    `seconds` (time taken) is the only non-deterministic value; in index.html it sits only in cells
    of class "secs"."""
    import json
    import pandas as pd
    out_dir = Path(out_dir)
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for c in ("frames", "faces", "intervals"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    paths = {"summary": write_csv(df, out_dir / "summary.csv")}
    df["shares"] = [json.dumps(r.get("class_shares") or {}, sort_keys=True) for r in rows]  # as the manifest keeps them
    df["order"] = df["status"].map(STATUS_ORDER).fillna(len(STATUS_ORDER))
    df = df.sort_values("order", kind="stable")
    body = []
    for r in df.itertuples(index=False):
        name = html.escape(str(r.video))
        link = f'<a href="{html.escape(str(r.report))}">{name}</a>' if not pd.isna(r.report) and r.report else name
        cells = [link, html.escape(str(r.status)), html.escape("" if pd.isna(r.error) else str(r.error))]
        cells += ["" if pd.isna(v) else html.escape(str(v)) for v in
                  (r.duration_s, r.frames, r.fps, r.faces, r.dominant_class, r.intervals)]
        status = html.escape(str(r.status), quote=True)
        body.append(f"<tr class='{status}' data-status='{status}' data-shares='{html.escape(r.shares, quote=True)}'>"
                    + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td class='secs'>{'' if pd.isna(r.seconds) else r.seconds}</td></tr>")
    counts = df["status"].value_counts()
    done = int(counts.get("done", 0))
    problems = ", ".join(f"{int(counts[k])} {k}" for k in ("failed", "partial", "pending") if counts.get(k, 0))
    head = "".join(f"<th>{c}</th>" for c in SUMMARY_COLUMNS[:-1])
    options = "".join(f"<option value='{k}'>{k} ({int(counts.get(k, 0))})</option>" for k in STATUS_ORDER)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MER batch</title>{STYLE}{INDEX_STYLE}"
            f"{_plotly_tag(plotlyjs)}</head><body>"
            f"<h1>MER batch: {done} of {len(df)} videos done</h1>"
            + (f"<p><b>{problems}</b>: listed first, with the reasons.</p>" if problems else "")
            + "<div id='controls'><input id='filter' type='search' placeholder='filter: text in any column'> "
              "<select id='status'><option value=''>every status</option>" + options + "</select> "
              "<span id='shown'></span> (click a column head to sort)</div>"
            f"<table class='tbl' id='videos'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "<h2>Overview</h2><div class='ov' id='ov-shares'></div><div class='ov' id='ov-rate'></div>"
            f"<div class='ov' id='ov-secs'></div>{INDEX_JS}</body></html>\n")
    paths["index"] = atomic_write(out_dir / "index.html", page)
    return paths


# ---------------------------------------------------------------- action-unit proxies (mer.aus)

def au_bars_figure(preds, classes) -> go.Figure:
    """Image tab: class probabilities per face (left) next to each face's AU proxies (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from .aus import AU_LABELS, AU_NAMES, au_code
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.08,
                        subplot_titles=("class probabilities", "AU proxies (from blendshapes)"))
    unseen = []
    for i, p in enumerate(preds):
        col = COLORS[i % len(COLORS)]
        fig.add_trace(go.Bar(x=list(classes), y=[p.probs[c] for c in classes], name=f"face #{i}",
                             legendgroup=f"f{i}", marker_color=col), row=1, col=1)
        aus = getattr(p, "aus", {}) or {}
        mesh = getattr(p, "mesh", None)
        if aus:
            fig.add_trace(go.Bar(x=[f"AU{au_code(n)}" for n in AU_NAMES], y=[aus[n] for n in AU_NAMES],
                                 name=f"AU proxies of face {i}", legendgroup=f"f{i}", showlegend=False, marker_color=col,
                                 hovertext=[AU_LABELS[n] for n in AU_NAMES]), row=1, col=2)
        elif mesh is not None and not mesh.found:  # a hand over the face, a false detection
            unseen.append(f"face #{i}: no face to the face mesh (presence {mesh.presence:.2f}), no AU proxies")
    if unseen:
        fig.add_annotation(text="<br>".join(unseen), xref="x2 domain", yref="y2 domain", x=0.5, y=0.9,
                           showarrow=False, font=dict(color="#555"))
    fig.update_yaxes(range=[0, 1], row=1, col=1, title_text="probability")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(barmode="group", height=340, margin=dict(l=40, r=10, t=40, b=30), template="plotly_white",
                      title="no faces" if not preds else None)
    return fig


def au_heatmap_figure(result, max_faces: int = 4, max_points: int = 2000) -> go.Figure:
    """Video tab and batch HTML: per face, the AU proxies over time as a heat map (AU x time), the
    spotted intervals marked on it with their AUs, objective class and emotion in the hover text."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from .aus import AU_LABELS, AU_NAMES, au_code
    df = result.frames
    if AU_NAMES[0] not in df.columns:
        fig = go.Figure()
        fig.update_layout(title="AU proxies: not computed (AUs off)", height=120, template="plotly_white")
        return fig
    faces = df[df["face_id"].notna()]
    ids = [int(i) for i in faces["face_id"].value_counts().sort_index().index][:max_faces]
    fig = make_subplots(rows=max(1, len(ids)), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"face {i}: AU proxies" for i in ids] or ["no faces"])
    labels = [f"AU{au_code(n)}" for n in AU_NAMES]
    for r, fid in enumerate(ids, start=1):
        g = faces[faces["face_id"] == fid]
        g = g.iloc[::max(1, int(np.ceil(len(g) / max_points)))]
        fig.add_trace(go.Heatmap(x=g["time_s"], y=labels, z=g[list(AU_NAMES)].to_numpy().T, zmin=0, zmax=1,
                                 colorscale="Viridis", showscale=r == 1, colorbar=dict(title="proxy", len=0.5),
                                 customdata=np.array([[AU_LABELS[n]] * len(g) for n in AU_NAMES]),
                                 hovertemplate="%{y} (%{customdata}) %{z:.2f} at %{x:.2f} s<extra></extra>"),
                      row=r, col=1)
        ivs = result.intervals[result.intervals["face_id"] == fid] if len(result.intervals) else []
        for _, iv in (ivs.iterrows() if len(ivs) else []):
            aus = "" if pd.isna(iv.get("aus")) else str(iv.get("aus"))
            text = (f"{iv.get('type', '')} {iv['onset_s']:.2f}-{iv['offset_s']:.2f} s<br>AUs: {aus or 'none'}"
                    f"<br>class {iv.get('objective_class', '')} ({iv.get('emotion', '')})")
            fig.add_trace(go.Scatter(x=[iv["onset_s"], iv["offset_s"], iv["offset_s"], iv["onset_s"], iv["onset_s"]],
                                     y=[labels[0], labels[0], labels[-1], labels[-1], labels[0]], mode="lines",
                                     line=dict(color=INTERVAL_COLORS.get(str(iv.get("type")), "white"), width=2),
                                     hoverinfo="text", hovertext=html.escape(text).replace("&lt;br&gt;", "<br>"),
                                     showlegend=False), row=r, col=1)
            fig.add_annotation(x=iv["onset_s"], y=labels[-1], text=html.escape(aus or str(iv.get("type", ""))),
                               showarrow=False, yshift=10, font=dict(size=9), row=r, col=1)
    fig.update_xaxes(title_text="time (s)", row=max(1, len(ids)), col=1)
    fig.update_layout(height=330 * max(1, len(ids)) + 60, margin=dict(l=50, r=20, t=40, b=40),
                      template="plotly_white")
    return fig
