"""The board as one self-contained HTML page (``leaderboard/index.html``).

No network at view time: styles and script are inline, figures are inline SVG written here (no
matplotlib, so the bytes do not depend on a plotting library's version), and a Content-Security-Policy
forbids loading anything; the script is allowed by its SHA-256 only, so even an injected ``<script>``
would not run. Every string that comes from an entry is escaped with :func:`html.escape`; links are
emitted only for ``http(s)`` URLs.

Sorting: click a column header (again to reverse), or open the page with ``#sort=<column>`` or
``#sort=<column>:asc|desc`` (e.g. ``index.html#sort=recall:desc``), which sorts every table on load.

Filters (form ``#filters``; each control has a stable id and a ``data-filter`` key, the same key as in the
URL hash): ``#filter-protocol`` (``protocol``: finetune, linear, knn-1, ...), ``#filter-status``
(``status``), ``#filter-external`` (``external``: none, ImageNet, in-domain, other), ``#filter-pmin`` /
``#filter-pmax`` (``pmin`` / ``pmax``: parameters in millions) and ``#filter-q`` (``q``: free text over
name, backbone, initialisation and external data); ``#filter-reset`` clears them. Ranked-table rows carry
``data-protocol``, ``data-status``, ``data-external``, ``data-params`` and ``data-search``; a filtered-out
row gets the ``hidden`` attribute. The state lives in the hash (``#protocol=linear&q=regnet&sort=f1:desc``),
so a filtered view can be linked; unknown keys or values in it are ignored and named in ``#filter-notice``;
``#filter-count`` says how many entries are shown.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Sequence

import numpy as np

from bmbench.classes import CLASS_CODES, cell_classes
from bmbench.leaderboard.board import (
    COLUMNS,
    Board,
    Row,
    Section,
    external_data_kind,
    protocol_text,
    row_cells,
    tied_with_leader,
)
from bmbench.leaderboard.schema import STATUSES
from bmbench.leaderboard.notes import (
    STATISTICS_DOC,
    STATISTICS_LEAD,
    SYNTHETIC_BANNER,
    has_seen_rows,
    intro_lines,
    notes,
    per_class_intro,
    section_note,
    statistics_link,
)

CLINICAL = ("BLA", "FGC")
"""Classes highlighted in the per-class view (blasts and faggot cells: rare, decisive findings)."""

STYLE = """
:root { --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --head:#f6f8fa; --tie:#fff8c5; --accent:#0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 32px 0 6px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
p { margin: 6px 0; max-width: 1100px; }
.muted { color: var(--muted); }
.banner { background: #ffebe9; border: 2px solid #cf222e; color: #82071e; font-weight: 600; padding: 10px 14px;
          border-radius: 6px; margin: 10px 0; max-width: 1100px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 7px; text-align: left; white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; font-weight: 600; }
td.num, th.num { text-align: right; }
th button { all: unset; cursor: pointer; }
th button:focus-visible { outline: 2px solid var(--accent); }
th[aria-sort="ascending"] button::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"] button::after { content: " \\25BC"; font-size: 10px; }
tr.tied td { background: var(--tie); }
tbody tr:hover td { background: #eaeef2; }
td.name { font-weight: 600; }
.badge { display: inline-block; font-size: 11px; font-weight: 600; padding: 0 6px; border-radius: 10px;
         border: 1px solid var(--line); margin-left: 4px; }
.badge.syn { background: #ffebe9; border-color: #cf222e; color: #82071e; }
.empty { color: var(--muted); font-style: italic; }
table.heat td { text-align: center; padding: 4px 5px; font-size: 12px; min-width: 42px; }
table.heat th { text-align: center; font-size: 12px; padding: 4px 5px; }
table.heat th.rowhead, table.heat td.rowhead { text-align: left; font-size: 13px; }
table.heat th.clinical { background: #ddf4ff; }
.toggle { margin: 6px 0; }
form.filters { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: end; margin: 14px 0 4px;
               padding: 10px 12px; border: 1px solid var(--line); border-radius: 6px; max-width: 1100px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
form.filters input, form.filters select { font: inherit; padding: 2px 4px; }
form.filters input[type=number] { width: 7em; }
.notice { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 6px; max-width: 1100px; }
.toggle label { margin-right: 12px; cursor: pointer; }
.figures { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { font-size: 13px; margin-bottom: 4px; }
ol.notes li { margin: 4px 0; max-width: 1100px; }
code { background: var(--head); padding: 0 4px; border-radius: 4px; }
"""

SCRIPT = """
(function () {
  "use strict";
  function cellValue(cell, numeric) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") { return null; }
    return numeric ? parseFloat(v) : v;
  }
  function defaultDirection(th) {
    return (th.getAttribute("data-type") === "num" && th.getAttribute("data-key") !== "rank") ? "desc" : "asc";
  }
  function sortTable(table, key, dir) {
    var heads = table.tHead.rows[0].cells, index = -1, numeric = false, i;
    for (i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-key") === key) {
        index = i;
        numeric = heads[i].getAttribute("data-type") === "num";
      }
    }
    if (index < 0) { return false; }
    if (dir !== "asc" && dir !== "desc") { dir = defaultDirection(heads[index]); }
    for (i = 0; i < heads.length; i++) {
      heads[i].setAttribute("aria-sort", i === index ? (dir === "asc" ? "ascending" : "descending") : "none");
    }
    var sign = dir === "asc" ? 1 : -1, body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[index], numeric), y = cellValue(b.cells[index], numeric);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return x < y ? -sign : (x > y ? sign : 0);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.setAttribute("data-sort-key", key);
    table.setAttribute("data-sort-dir", dir);
    return true;
  }
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.sortable"));
  tables.forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var key = th.getAttribute("data-key"), dir = defaultDirection(th);
        if (table.getAttribute("data-sort-key") === key) {
          dir = table.getAttribute("data-sort-dir") === "asc" ? "desc" : "asc";
        }
        sortTable(table, key, dir);
      });
    });
  });
  var match = /(?:^|[#&])sort=([a-z0-9_]+)(?::(asc|desc))?/.exec(window.location.hash);
  if (match) { tables.forEach(function (table) { sortTable(table, match[1], match[2]); }); }
  var radios = document.querySelectorAll("input[name=heatmetric]");
  function showHeat() {
    Array.prototype.forEach.call(radios, function (radio) {
      var target = document.getElementById(radio.getAttribute("data-target"));
      if (target) { target.hidden = !radio.checked; }
    });
  }
  Array.prototype.forEach.call(radios, function (radio) { radio.addEventListener("change", showHeat); });
  showHeat();
  var form = document.getElementById("filters");
  var controls = form ? Array.prototype.slice.call(form.querySelectorAll("[data-filter]")) : [];
  var notice = document.getElementById("filter-notice");
  var counter = document.getElementById("filter-count");
  function parseHash() {
    var out = {}, text = window.location.hash.replace(/^#/, "");
    if (!text) { return out; }
    text.split("&").forEach(function (part) {
      var eq = part.indexOf("="), key, value;
      if (eq < 0) { key = part; value = ""; } else { key = part.slice(0, eq); value = part.slice(eq + 1); }
      try { key = decodeURIComponent(key); value = decodeURIComponent(value.split("+").join(" ")); }
      catch (err) { out["!" + part] = ""; return; }
      out[key] = value;
    });
    return out;
  }
  function control(key) {
    for (var i = 0; i < controls.length; i++) {
      if (controls[i].getAttribute("data-filter") === key) { return controls[i]; }
    }
    return null;
  }
  function allowed(el, value) {
    if (el.tagName === "SELECT") {
      for (var i = 0; i < el.options.length; i++) { if (el.options[i].value === value) { return true; } }
      return false;
    }
    if (el.type === "number") { return value !== "" && isFinite(Number(value)) && Number(value) >= 0; }
    return value.length <= 200;
  }
  function fromHash() {
    var state = parseHash(), ignored = [];
    controls.forEach(function (el) { el.value = ""; });
    Object.keys(state).forEach(function (key) {
      if (key === "sort") { return; }
      var el = control(key);
      if (!el || !allowed(el, state[key])) { ignored.push(key.replace(/^!/, "") + (state[key] ? "=" + state[key] : "")); return; }
      el.value = state[key];
    });
    if (notice) {
      notice.hidden = ignored.length === 0;
      notice.textContent = ignored.length ? "Ignored unknown filter value(s) in the address: " + ignored.join(", ") : "";
    }
  }
  function toHash() {
    var parts = [], state = parseHash();
    controls.forEach(function (el) {
      if (el.value !== "") { parts.push(el.getAttribute("data-filter") + "=" + encodeURIComponent(el.value)); }
    });
    if (state.sort) { parts.push("sort=" + state.sort); }
    var hash = parts.length ? "#" + parts.join("&") : "";
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", window.location.pathname + window.location.search + hash);
    }
  }
  function applyFilters() {
    var get = function (key) { var el = control(key); return el ? el.value : ""; };
    var protocol = get("protocol"), status = get("status"), external = get("external");
    var pmin = get("pmin"), pmax = get("pmax"), q = get("q").trim().toLowerCase();
    var shown = 0, total = 0, visible = {};
    Array.prototype.forEach.call(document.querySelectorAll("table.board tbody tr"), function (row) {
      var params = row.getAttribute("data-params"), ok = true;
      if (protocol && row.getAttribute("data-protocol") !== protocol) { ok = false; }
      if (status && row.getAttribute("data-status") !== status) { ok = false; }
      if (external && row.getAttribute("data-external") !== external) { ok = false; }
      if ((pmin !== "" || pmax !== "") && params === "") { ok = false; }
      if (pmin !== "" && params !== "" && Number(params) < Number(pmin) * 1e6) { ok = false; }
      if (pmax !== "" && params !== "" && Number(params) > Number(pmax) * 1e6) { ok = false; }
      if (q && (row.getAttribute("data-search") || "").indexOf(q) < 0) { ok = false; }
      row.hidden = !ok;
      total += 1;
      if (ok) { shown += 1; visible[row.getAttribute("data-name")] = true; }
    });
    Array.prototype.forEach.call(document.querySelectorAll("table.heat tbody tr, figure[data-name]"), function (el) {
      el.hidden = !visible[el.getAttribute("data-name")];
    });
    if (counter) { counter.textContent = shown + " of " + total + " entries shown"; }
  }
  controls.forEach(function (el) {
    el.addEventListener("input", function () { applyFilters(); toHash(); });
    el.addEventListener("change", function () { applyFilters(); toHash(); });
  });
  var reset = document.getElementById("filter-reset");
  if (reset) {
    reset.addEventListener("click", function () {
      controls.forEach(function (el) { el.value = ""; });
      applyFilters(); toHash();
    });
  }
  window.addEventListener("hashchange", function () { fromHash(); applyFilters(); });
  fromHash();
  applyFilters();
  document.documentElement.setAttribute("data-ready", "1");
})();
"""


_CODE = re.compile(r"`([^`<>]+)`")
"""Inline code in bmbench's own prose (applied after escaping, never to entry strings)."""


def _prose(text: str) -> str:
    """bmbench's own sentences: escaped, with `code` spans as <code>."""
    return _CODE.sub(r"<code>\1</code>", e(text))


def e(value: object) -> str:
    """Escape any text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def safe_url(url: str | None) -> str | None:
    """The URL if it is plain http(s) (so no ``javascript:`` link can be made from an entry), else None."""
    if url and url.startswith(("https://", "http://")) and not any(c in url for c in "\"'<> \t\n\r\\"):
        return url
    return None


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def _sort_value(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return e(value)


def _ranked_table(section: Section) -> list[str]:
    out = [f'<div class="scroll"><table class="board sortable" id="{e(section.anchor)}-table" '
           f'data-sort-key="f1" data-sort-dir="desc">', "<thead><tr>"]
    for col in COLUMNS:
        cls = ' class="num"' if col.numeric else ""
        sort = ' aria-sort="descending"' if col.key == "f1" else ' aria-sort="none"'
        out.append(f'<th{cls} data-key="{col.key}" data-type="{"num" if col.numeric else "text"}"{sort} '
                   f'title="{e(col.help)}"><button type="button">{e(col.label)}</button></th>')
    out.append("</tr></thead><tbody>")
    for row in section.rows:
        cells = row_cells(row)
        tr_class = ' class="tied"' if tied_with_leader(row) else ""
        out.append(f'<tr data-name="{e(row.name)}"{tr_class}{_filter_attrs(row)}>')
        for col in COLUMNS:
            cell = cells[col.key]
            classes = " ".join(c for c in ("num" if col.numeric else "", "name" if col.key == "name" else "") if c)
            attrs = f' class="{classes}"' if classes else ""
            attrs += f' data-v="{_sort_value(cell.sort)}"'
            if cell.title:
                attrs += f' title="{e(cell.title)}"'
            content = e(cell.text)
            if col.key == "name":
                content = _name_content(row)
            elif col.key == "weights" and row.entry.weights is not None and safe_url(row.entry.weights.url):
                content = f'<a href="{e(row.entry.weights.url)}" rel="noopener noreferrer">{e(cell.text)}</a>'

            out.append(f"<td{attrs}>{content}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def _filter_attrs(row: Row) -> str:
    """The attributes the page's filters read (see the module docstring)."""
    entry = row.entry
    params = entry.parameters if entry.parameters is not None else (entry.encoder.parameters if entry.encoder else None)
    search = " ".join([entry.name, entry.backbone, entry.init, *entry.pretraining_data,
                       entry.encoder.id if entry.encoder else ""]).lower()
    return (f' data-protocol="{e(entry.protocol)}" data-status="{e(entry.status)}" '
            f'data-external="{e(external_data_kind(entry.pretraining_data))}" '
            f'data-params="{"" if params is None else params}" data-search="{e(search)}"')


def _filters(sections: Sequence[Section]) -> list[str]:
    """The filter form; option lists are the values present on the board (protocols) or all (others)."""
    protocols = sorted({r.entry.protocol for s in sections for r in s.rows} | {"finetune"})
    out = ['<form class="filters" id="filters" role="search" aria-label="Filter the entries">']

    def select(key: str, label: str, options: Sequence[tuple[str, str]]) -> None:
        opts = '<option value="">all</option>' + "".join(f'<option value="{e(v)}">{e(t)}</option>'
                                                         for v, t in options)
        out.append(f'<label for="filter-{key}">{e(label)}<select id="filter-{key}" data-filter="{key}">{opts}'
                   "</select></label>")

    select("protocol", "Protocol", [(p, protocol_text(p)) for p in protocols])
    select("status", "Status", [(s, s) for s in STATUSES])
    select("external", "External data", [(k, k) for k in ("none", "ImageNet", "in-domain", "other")])
    out.append('<label for="filter-pmin">Params \u2265 (M)<input type="number" id="filter-pmin" data-filter="pmin" '
               'min="0" step="any"></label>')
    out.append('<label for="filter-pmax">Params \u2264 (M)<input type="number" id="filter-pmax" data-filter="pmax" '
               'min="0" step="any"></label>')
    out.append('<label for="filter-q">Search<input type="search" id="filter-q" data-filter="q" '
               'placeholder="name, backbone, data"></label>')
    out.append('<button type="button" id="filter-reset">Reset</button>')
    out.append('<span class="muted" id="filter-count" aria-live="polite"></span>')
    out.append("</form>")
    out.append('<p class="notice" id="filter-notice" role="status" hidden></p>')
    return out


def _name_content(row: Row) -> str:
    entry = row.entry
    url = safe_url(entry.code.url)
    source = getattr(entry.results, "source", None)
    if url is None and source is not None:
        url = safe_url(source.url)
    text = e(entry.name)
    content = f'<a href="{e(url)}" rel="noopener noreferrer">{text}</a>' if url else text
    return content


def _section_html(section: Section) -> list[str]:
    out = [f'<section id="{e(section.anchor)}">', f"<h2>{e(section.title)}</h2>"]
    note = section_note(section)
    if note:
        out.append(f'<p class="muted">{e(note)}</p>')
    if not section.rows:
        out.append('<p class="empty">No results on this split yet. See CONTRIBUTING.md in the repository for '
                   "how to add one.</p>")
    else:
        out += _ranked_table(section)
    out.append("</section>")
    return out


def _blend(value: float) -> tuple[str, str]:
    """Background (white to deep blue) and text colour for a value in [0, 1]."""
    v = min(max(float(value), 0.0), 1.0)
    low, high = np.array([247, 251, 255]), np.array([8, 48, 107])
    rgb = np.rint(low + (high - low) * v).astype(int)
    return f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}", ("#ffffff" if v > 0.55 else "#1b1f24")


def _heat_table(rows: Sequence[Row], metric: str, label: str, table_id: str) -> list[str]:
    classes = cell_classes()
    out = [f'<div class="scroll" id="{table_id}"><table class="heat" data-metric="{metric}">',
           f'<caption class="muted">Per-class {e(label)} (mean over folds)</caption><thead><tr>'
           '<th class="rowhead">Entry</th>']
    for c in classes:
        cls = ' class="clinical"' if c.code in CLINICAL else ""
        out.append(f'<th{cls} title="{e(c.name)}: {c.count:,} images">{e(c.code)}</th>')
    out.append("</tr></thead><tbody>")
    for row in rows:
        if row.per_class is None:
            continue
        out.append(f'<tr data-name="{e(row.name)}"><td class="rowhead">{e(row.name)}</td>')
        for c in classes:
            value = row.per_class[c.code][metric]
            bg, fg = _blend(value)
            out.append(f'<td style="background:{bg};color:{fg}" title="{e(row.name)} \u00b7 {e(c.name)}: '
                       f'{label} {value:.3f}">{value:.2f}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def confusion_svg(name: str, mean_confusion: np.ndarray) -> str:
    """The mean confusion matrix, row-normalised (each true class sums to 1), as an inline SVG."""
    counts = np.asarray(mean_confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    k = len(CLASS_CODES)
    cell, left, top = 16, 34, 34
    size_w, size_h = left + k * cell + 6, top + k * cell + 22
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size_w}" height="{size_h}" '
             f'viewBox="0 0 {size_w} {size_h}" role="img" aria-label="{e("Mean confusion matrix of " + name)}" '
             'font-family="system-ui, sans-serif" font-size="8">']
    for j, code in enumerate(CLASS_CODES):
        x = left + j * cell + cell / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 4}" transform="rotate(-90 {x:.1f} {top - 4})" '
                     f'dominant-baseline="middle">{code}</text>')
        parts.append(f'<text x="{left - 3}" y="{top + j * cell + cell / 2:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{code}</text>')
    for i, true_code in enumerate(CLASS_CODES):
        for j, pred_code in enumerate(CLASS_CODES):
            bg, _ = _blend(norm[i, j])
            parts.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                         f'fill="{bg}" stroke="#ffffff" stroke-width="0.5"><title>true {true_code}, predicted '
                         f'{pred_code}: {norm[i, j]:.3f} ({counts[i, j]:.1f} images per fold)</title></rect>')
    parts.append(f'<text x="{left + k * cell / 2:.1f}" y="{size_h - 6}" text-anchor="middle" font-size="9">'
                 "predicted class (rows: true class; each row sums to 1)</text>")
    parts.append("</svg>")
    return "".join(parts)


def _figures(rows: Sequence[Row]) -> list[str]:
    with_cm = [(r, r.mean_confusion) for r in rows if r.mean_confusion is not None]
    out = ["<h3>Mean confusion matrices</h3>"]
    if not with_cm:
        out.append('<p class="empty">No entry with confusion matrices yet (papers publish summary figures only).</p>')
        return out
    out.append('<p class="muted">Mean over folds of each entry\'s confusion matrix, normalised by row '
               "(the diagonal is the per-class recall), as in Fig. 4 of Gl\u00fcge et al. (2023).</p>")
    out.append('<div class="figures">')
    for row, matrix in with_cm:
        out.append(f'<figure data-name="{e(row.name)}"><figcaption>{e(row.name)}</figcaption>'
                   f"{confusion_svg(row.name, matrix)}</figure>")
    out.append("</div>")
    return out


def render_html(board: Board, sections: Sequence[Section], entry_count: int) -> str:
    """The whole page."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{e(_csp())}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="generator" content="bmbench leaderboard build">',
           f"<title>{e(board.title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
           f"<h1>{e(board.title)}</h1>"]
    for line in intro_lines(board, entry_count, markdown=False):
        cls = "banner" if line == SYNTHETIC_BANNER else "muted"
        out.append(f'<p class="{cls}">{_prose(line)}</p>')
    out.append("<nav>" + "".join(f'<a href="#{e(s.anchor)}">{e(s.split_name)}</a>' for s in sections)
               + '<a href="#per-class">per-class view</a><a href="#notes">notes</a>'
               + '<a href="results.csv">results.csv</a><a href="results.json">results.json</a>'
               + '<a href="entry.schema.json">entry schema</a></nav>')
    out += _filters(sections)
    for section in sections:
        out += _section_html(section)
    rows = [r for s in sections for r in s.rows]
    with_classes = [r for r in rows if r.per_class is not None]
    out += ['<section id="per-class">', "<h2>Per-class view</h2>", f'<p class="muted">{e(per_class_intro())}</p>']
    if with_classes:
        out.append('<div class="toggle">Show: <label><input type="radio" name="heatmetric" data-target="heat-f1" '
                   'checked> F1</label><label><input type="radio" name="heatmetric" data-target="heat-recall"> '
                   "recall</label></div>")
        out += _heat_table(with_classes, "f1", "F1", "heat-f1")
        out += _heat_table(with_classes, "recall", "recall", "heat-recall")
    else:
        out.append('<p class="empty">No entry with per-class figures yet.</p>')
    out += _figures(rows)
    out.append("</section>")
    out += ['<section id="notes">', "<h2>Notes</h2>", '<ol class="notes">']
    paper_rows = any(s.split_sha256 is None for s in sections)
    out += [f"<li>{e(text)}</li>" for text in
            notes(board, paper_rows=paper_rows, seen_rows=has_seen_rows(sections))]
    href = statistics_link(board)
    doc = (f'<a href="{e(href)}" id="statistics-doc">{e(STATISTICS_DOC)}</a>' if href
           else e(STATISTICS_DOC + " in the bmbench repository"))
    out += ["</ol>", f'<p id="statistics">{e(STATISTICS_LEAD)} {doc}.</p>',
            '<p class="muted">Generated by <code>bmbench leaderboard build</code>; sort by clicking a '
            "column header or with <code>#sort=&lt;column&gt;[:asc|desc]</code> in the address.</p>", "</section>"]
    out += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
