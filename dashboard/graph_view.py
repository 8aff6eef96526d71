"""The head graph as an interactive pyvis network that renders with the network closed."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass

import numpy as np
from pyvis.network import Network

from cahp_core.palette import KEPT_COLOR

from .theme import cluster_color, text_color

# pyvis' template links Bootstrap from a CDN even in "in_line" mode; the graph does not need it.
_REMOTE_TAG = re.compile(
    r"<link[^>]+href=\"https?://[^\"]+\"[^>]*/?>|<script[^>]+src=\"https?://[^\"]+\"[^>]*>\s*</script>",
    re.IGNORECASE | re.DOTALL,
)
LAYER_SPACING, HEAD_SPACING = 150, 80  # canvas units between layers (x) and heads (y)
LABEL_FONT = 20  # canvas units; the view is fitted, so about 14-18 px on screen
LEGEND_WIDTH = 210  # px kept free on the right of the canvas for the legend
EMPTY_MESSAGE = "No heads match the filters: pick at least one layer (and a cluster present in it)."


def strip_remote_resources(html: str) -> str:
    """Drop every <link>/<script> that would fetch from another host."""
    return _REMOTE_TAG.sub("", html)


def shown_nodes(
    graph: dict,
    labels: np.ndarray,
    n_heads: int,
    layers: list[int] | None = None,
    clusters: list[int] | None = None,
) -> list[dict]:
    """The graph's nodes in the chosen ``layers`` and ``clusters`` (all when None)."""
    return [
        node
        for node in graph["nodes"]
        if (layers is None or int(node["layer"]) in layers)
        and (
            clusters is None
            or int(labels[int(node["layer"]) * n_heads + int(node["head"])]) in clusters
        )
    ]


@dataclass(frozen=True)
class GraphCounts:
    """What the filters leave on the graph, and the totals."""

    heads: int
    heads_total: int
    kept: int
    kept_total: int
    edges: int
    edges_total: int
    clusters: int
    clusters_total: int

    def caption(self) -> str:
        """``Showing 12 of 72 heads (3 of 14 kept), 40 of 250 edges, 5 of 14 clusters``."""
        return (
            f"Showing {self.heads} of {self.heads_total} heads ({self.kept} of {self.kept_total} "
            f"kept), {self.edges} of {self.edges_total} edges, {self.clusters} of "
            f"{self.clusters_total} clusters."
        )


def graph_counts(
    graph: dict,
    labels: np.ndarray,
    keep: np.ndarray,
    layers: list[int] | None = None,
    clusters: list[int] | None = None,
) -> GraphCounts:
    """Heads, kept heads, edges and clusters drawn under the filters, beside the totals."""
    n_heads = keep.shape[1]
    nodes = shown_nodes(graph, labels, n_heads, layers, clusters)
    ids = {node["id"] for node in nodes}
    flat = [int(n["layer"]) * n_heads + int(n["head"]) for n in nodes]
    return GraphCounts(
        heads=len(nodes),
        heads_total=len(graph["nodes"]),
        kept=int(keep.ravel()[flat].sum()) if flat else 0,
        kept_total=int(keep.sum()),
        edges=sum(e["source"] in ids and e["target"] in ids for e in graph["edges"]),
        edges_total=len(graph["edges"]),
        clusters=len({int(labels[i]) for i in flat}),
        clusters_total=len(np.unique(labels)),
    )


def graph_height(n_heads: int) -> int:
    """Canvas height in px: tall enough that labels of a 12-head model stay readable."""
    return int(min(860, max(480, 56 * n_heads + 80)))


def _star_svg(fill: str, size: int = 22) -> str:
    points = "12,1 15,9 23,9 17,14 19,22 12,17 5,22 7,14 1,9 9,9"
    return (
        f'<svg width="{size}" height="{size}" viewBox="0 0 24 24"><polygon points="{points}" '
        f'fill="{fill}" stroke="{KEPT_COLOR}" stroke-width="2"/></svg>'
    )


def _dot_svg(fill: str, radius: int) -> str:
    side = 2 * radius + 2
    return (
        f'<svg width="{side}" height="{side}"><circle cx="{radius + 1}" cy="{radius + 1}" '
        f'r="{radius}" fill="{fill}"/></svg>'
    )


def legend_html(clusters: list[int]) -> str:
    """The on-canvas legend (``div.cahp-legend``): star = kept, size = salience, colour =
    cluster (a numbered swatch per cluster drawn), and a box the click handler fills."""
    swatches = "".join(
        f'<span class="cahp-swatch" title="cluster {c}" style="background:{cluster_color(c)};'
        f'color:{text_color(cluster_color(c))}">{c}</span>'
        for c in clusters
    )
    grey = "#94a3b8"
    return f"""
<div class="cahp-legend" role="note" aria-label="legend">
  <div class="cahp-legend-title">How to read</div>
  <div class="cahp-row">{_star_svg("#ffffff")}<span><b>star</b> = kept head</span></div>
  <div class="cahp-row">{_dot_svg(grey, 6)}<span><b>dot</b> = pruned head</span></div>
  <div class="cahp-row">{_dot_svg(grey, 4)}{_dot_svg(grey, 9)}
    <span><b>size</b> = salience (gradient importance)</span></div>
  <div class="cahp-row"><span><b>colour</b> = cluster (same on every page):</span></div>
  <div class="cahp-swatches">{swatches}</div>
  <div class="cahp-row cahp-small">lines join each head to its nearest heads</div>
  <div id="cahp-info" class="cahp-info">Click a head for its details.</div>
</div>"""


_STYLE = f"""
<style>
  body {{ margin: 0; font-family: "Source Sans Pro", "Segoe UI", sans-serif; }}
  center {{ display: none; }}
  .card {{ position: relative; border: none; }}
  #mynetwork {{ width: calc(100% - {LEGEND_WIDTH + 12}px) !important; }}
  .cahp-legend {{ position: absolute; top: 0; right: 0; width: {LEGEND_WIDTH}px;
    box-sizing: border-box; padding: 10px 12px; background: #ffffff; color: #111827;
    border: 1px solid #cbd5e1; border-radius: 8px; font-size: 15px; line-height: 1.35; }}
  .cahp-legend-title {{ font-weight: 700; font-size: 16px; margin-bottom: 4px; }}
  .cahp-row {{ display: flex; align-items: center; gap: 6px; margin: 3px 0; }}
  .cahp-row svg {{ flex-shrink: 0; }}
  .cahp-small {{ font-size: 13px; color: #475569; }}
  .cahp-swatches {{ display: flex; flex-wrap: wrap; gap: 3px; margin: 2px 0 6px; }}
  .cahp-swatch {{ display: inline-block; min-width: 24px; height: 22px; line-height: 22px;
    text-align: center; font-size: 13px; font-weight: 600; border-radius: 4px; }}
  .cahp-info {{ margin-top: 6px; padding: 6px; background: #f1f5f9; border-radius: 6px;
    font-size: 14px; white-space: pre-line; }}
  .cahp-empty {{ padding: 40px; font-size: 18px; color: #334155; text-align: center; }}
</style>
"""

_CLICK_SCRIPT = """
<script type="text/javascript">
  network.on("click", function (params) {
    var box = document.getElementById("cahp-info");
    if (!params.nodes.length) { box.textContent = "Click a head for its details."; return; }
    var node = nodes.get(params.nodes[0]);
    box.textContent = node.title + "\\nWhy kept or dropped: pick " + node.id +
      " in \\u201cHead details\\u201d below.";
  });
</script>
"""


def empty_graph_html(message: str = EMPTY_MESSAGE) -> str:
    """What the graph frame shows when the filters hide every head."""
    return f'<html><body>{_STYLE}<div class="cahp-empty">{html_lib.escape(message)}</div></body></html>'


def head_graph_html(
    graph: dict,
    labels: np.ndarray,
    keep: np.ndarray,
    salience: np.ndarray,
    layers: list[int] | None = None,
    clusters: list[int] | None = None,
    height: int | None = None,
) -> str:
    """Self-contained HTML: heads placed by layer (x) and head (y), coloured by cluster,
    sized by salience, kept heads drawn as outlined stars, a legend beside the canvas;
    hover or click shows layer/head/salience/cluster. Only the chosen ``layers`` /
    ``clusters`` are drawn (all when None); none left: an empty-state message."""
    n_heads = keep.shape[1]
    nodes = shown_nodes(graph, labels, n_heads, layers, clusters)
    if not nodes:
        return empty_graph_html()
    height = height or graph_height(n_heads)
    net = Network(height=f"{height}px", width="100%", cdn_resources="in_line", directed=False)
    net.toggle_physics(False)
    for node in nodes:
        layer, head = int(node["layer"]), int(node["head"])
        cluster = int(labels[layer * n_heads + head])
        kept = bool(keep[layer, head])
        weight = float(salience[layer, head])
        net.add_node(
            node["id"],
            label=node["id"],
            x=layer * LAYER_SPACING,
            y=head * HEAD_SPACING,
            color={
                "background": cluster_color(cluster),
                "border": KEPT_COLOR if kept else cluster_color(cluster),
            },
            borderWidth=2.5 if kept else 1,
            shape="star" if kept else "dot",
            size=(12 + 12 * weight) if kept else (5 + 10 * weight),  # below the next label
            title=(
                f"{node['id']}: layer {layer}, head {head}\nsalience {weight:.3f}\n"
                f"cluster {cluster}\n{'kept' if kept else 'pruned'}"
            ),
            font={
                "size": LABEL_FONT,
                "color": KEPT_COLOR,
                "strokeWidth": 5,
                "strokeColor": "#ffffff",
            },
        )
    shown = {node["id"] for node in nodes}
    for edge in graph["edges"]:
        if edge["source"] in shown and edge["target"] in shown:
            net.add_edge(
                edge["source"],
                edge["target"],
                width=0.5 + 2.0 * float(edge.get("weight", 1.0)),
                color="#cbd5e1",
            )
    drawn = sorted({int(labels[int(n["layer"]) * n_heads + int(n["head"])]) for n in nodes})
    page = strip_remote_resources(net.generate_html(notebook=False))
    page = page.replace("</head>", _STYLE + "</head>", 1)
    page = page.replace(
        '<div id="mynetwork" class="card-body"></div>',
        '<div id="mynetwork" class="card-body"></div>' + legend_html(drawn),
        1,
    )
    return page.replace("</body>", _CLICK_SCRIPT + "</body>", 1)
