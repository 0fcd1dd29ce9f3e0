"""A region x region matrix as its own zoomable page (large atlases: the report links to it instead of a thumbnail).

The page holds the upper triangle as 16-bit integers (value x 100, base64) and a
short script draws it on a canvas, one pixel per cell scaled up without
smoothing: regions ordered by network with the networks' borders and names,
zoom buttons, region names once the cells are large enough to carry them,
and the two regions and the value of the cell under the pointer.  About
3 bytes per connection, no figure to render.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from nmflow.networks import Assignment
from nmflow.reports.html import Link, Section, esc, links, paragraph, render_page
from nmflow.reports.words import region_label

SCALE = 100  # stored value = round(value * SCALE); readout to 0.01
MISSING = -32768

_SCRIPT = """
<script>
(function () {
  var box = document.getElementById('matrix-data'), d = JSON.parse(box.getAttribute('data-matrix'));
  var n = d.labels.length, raw = atob(d.values), v = new Int16Array(n * n).fill(-32768), k = 0;
  for (var i = 0; i < n; i++) {  // the upper triangle, row by row, mirrored
    for (var j = i + 1; j < n; j++, k++) {
      var u = raw.charCodeAt(2 * k) | (raw.charCodeAt(2 * k + 1) << 8);
      v[i * n + j] = v[j * n + i] = u > 32767 ? u - 65536 : u;
    }
  }
  function rdbu(t) {
    var a = [[33,102,172],[103,169,207],[209,229,240],[247,247,247],[253,219,199],[239,138,98],[178,24,43]];
    var x = Math.max(0, Math.min(1, t)) * (a.length - 1), i = Math.min(Math.floor(x), a.length - 2), f = x - i;
    return [0,1,2].map(function (c) { return Math.round(a[i][c] + f * (a[i+1][c] - a[i][c])); });
  }
  var base = document.createElement('canvas'); base.width = n; base.height = n;
  var img = base.getContext('2d').createImageData(n, n);
  for (var k = 0; k < n * n; k++) {
    var c = (v[k] === -32768) ? [221,221,221] : rdbu((v[k] / d.scale + d.limit) / (2 * d.limit));
    img.data[4*k] = c[0]; img.data[4*k+1] = c[1]; img.data[4*k+2] = c[2]; img.data[4*k+3] = 255;
  }
  base.getContext('2d').putImageData(img, 0, 0);
  var canvas = document.getElementById('matrix-canvas'), out = document.getElementById('matrix-value');
  var cell = d.cell, pad = 0;
  function draw() {
    pad = 40 + (cell >= 8 ? 7 * d.longest : 0);
    canvas.width = canvas.height = pad + n * cell + 2;
    var g = canvas.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(base, pad, pad, n * cell, n * cell);
    g.strokeStyle = '#222'; g.lineWidth = 1; g.font = '11px sans-serif'; g.fillStyle = '#222';
    d.networks.forEach(function (net, k) {
      var a = pad + net.start * cell, len = (net.stop - net.start) * cell;
      g.strokeRect(a, pad, len, n * cell); g.strokeRect(pad, a, n * cell, len);
      g.save(); g.beginPath(); g.rect(0, a, 36, len); g.clip();
      g.fillStyle = net.colour; g.fillRect(30, a, 8, len); g.fillStyle = '#222';
      g.translate(12, a + len / 2); g.rotate(-Math.PI / 2); g.textAlign = 'center'; g.fillText(net.name, 0, 0);
      g.restore();
      g.save(); g.beginPath(); g.rect(a, 0, len, 36); g.clip();
      g.fillStyle = net.colour; g.fillRect(a, 30, len, 8); g.fillStyle = '#222'; g.textAlign = 'center';
      g.fillText(net.name, a + len / 2, 16); g.restore();
    });
    if (cell >= 8) {
      g.font = Math.min(11, cell) + 'px sans-serif';
      for (var i = 0; i < n; i++) {
        g.textAlign = 'right'; g.fillText(d.labels[i], pad - 3, pad + i * cell + cell * 0.8);
        g.save(); g.translate(pad + i * cell + cell * 0.8, pad - 3); g.rotate(-Math.PI / 2); g.textAlign = 'left';
        g.fillText(d.labels[i], 0, 0); g.restore();
      }
    }
    document.getElementById('matrix-zoom').textContent = cell + ' px per cell';
  }
  canvas.addEventListener('mousemove', function (e) {
    var r = canvas.getBoundingClientRect(), j = Math.floor((e.clientX - r.left - pad) / cell),
        i = Math.floor((e.clientY - r.top - pad) / cell);
    if (i >= 0 && j >= 0 && i < n && j < n && i !== j) {
      var x = v[i * n + j];
      out.textContent = d.labels[i] + ' (' + d.network_of[i] + ') – ' + d.labels[j] + ' (' + d.network_of[j] + '): ' +
                        (x === -32768 ? 'n/a' : (x / d.scale).toFixed(2)) + ' ' + d.unit;
    }
  });
  document.getElementById('matrix-in').onclick = function () { cell = Math.min(24, cell + (cell < 4 ? 1 : 2)); draw(); };
  document.getElementById('matrix-out').onclick = function () { cell = Math.max(1, cell - (cell <= 4 ? 1 : 2)); draw(); };
  draw();
})();
</script>
<style>
#matrix-tools{position:sticky;top:2.2em;background:#fff;padding:.3em 0;z-index:5}
#matrix-tools button{font-size:1em;width:2.2em}#matrix-value{margin-left:1em;font-size:.9em;color:#333}
#matrix-wrap{overflow:auto;max-height:85vh;border:1px solid #e1e4e8}
.matrix-bar{display:inline-block;width:180px;height:10px;vertical-align:middle;
 background:linear-gradient(to right,rgb(33,102,172),rgb(247,247,247),rgb(178,24,43))}
</style>
"""


def networks_note(networks: Assignment) -> str:
    """Where the networks of the summaries come from, as a paragraph (a warning for data-driven modules)."""
    text = f"Networks: {networks.source}."
    if networks.data_driven:
        return paragraph(text + " No network of each region was recorded (e.g. time series of another pipeline "
                         "without region names): the regions are grouped by their connectivity in this study.",
                         "warn")
    return paragraph(text)


def matrix_link(href: str) -> str:
    """The link to a full region x region matrix page."""
    return links("Every connection:", [Link(href, "full region × region matrix (zoomable; point at a cell to read "
                                                  "it)")])


def full_matrix(values: np.ndarray, connection: np.ndarray, n_regions: int) -> np.ndarray:
    """Symmetric ``(n_regions, n_regions)`` matrix of ``values`` ``(n_scored,)`` at their upper-triangle
    indices ``connection``; NaN for connections not scored and on the diagonal."""
    rows, cols = np.triu_indices(n_regions, k=1)
    out = np.full((n_regions, n_regions), np.nan)
    out[rows[connection], cols[connection]] = values
    out[cols[connection], rows[connection]] = values
    return out


def write_matrix_page(path: Path, matrix: np.ndarray, regions: list[str], networks: Assignment,
                      colours: dict[str, str], title: str, caption: str, limit: float, unit: str,
                      back: tuple[str, str]) -> Path:
    """Write the zoomable page of one ``(n, n)`` ``matrix`` (regions ordered by network) and return ``path``.

    ``colours`` maps a network to its colour, ``limit`` is the half-range of
    the colour scale (blue ``-limit``, red ``+limit``), ``back`` the
    ``(href, text)`` of the page that links to this one.
    """
    n = len(regions)
    order = np.argsort(networks.codes, kind="stable")
    shown = matrix[np.ix_(order, order)]
    upper = shown[np.triu_indices(n, k=1)]
    stored = np.where(np.isfinite(upper), np.clip(np.round(upper * SCALE), -32767, 32767), MISSING).astype("<i2")
    codes = networks.codes[order]
    blocks = [{"name": name, "colour": colours.get(name, "#999999"), "start": int(np.searchsorted(codes, k)),
               "stop": int(np.searchsorted(codes, k, side="right"))} for k, name in enumerate(networks.order)]
    labels = [region_label(regions[k]) for k in order]
    data = {"labels": labels, "network_of": [networks.networks[k] for k in order],
            "networks": [b for b in blocks if b["stop"] > b["start"]], "values": base64.b64encode(
                stored.tobytes()).decode(), "scale": SCALE, "limit": float(limit), "unit": unit,
            "cell": int(np.clip(1100 // max(n, 1), 1, 12)), "longest": max(len(s) for s in labels)}
    body = (paragraph(caption) + f"<p>{Link(*back)}</p>"
            f'<div id="matrix-tools"><button id="matrix-out" title="zoom out">−</button>'
            f'<button id="matrix-in" title="zoom in">+</button> <span id="matrix-zoom"></span> · colour '
            f'{-limit:g} <span class="matrix-bar"></span> {limit:g} {unit} (beyond: full colour)'
            f'<span id="matrix-value">Point at a cell to read it.</span></div>'
            f"<div id=\"matrix-wrap\"><div id=\"matrix-data\" data-matrix='{esc(json.dumps(data))}'>"
            '<canvas id="matrix-canvas"></canvas></div></div>')
    return render_page(path, title, [Section("matrix", "Region × region matrix", body)], script=_SCRIPT)
