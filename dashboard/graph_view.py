"""The head graph as an interactive pyvis network that renders with the network closed."""

from __future__ import annotations

import re

import numpy as np
from pyvis.network import Network

from .theme import KEPT_COLOR, cluster_color

# pyvis' template links Bootstrap from a CDN even in "in_line" mode; the graph does not need it.
_REMOTE_TAG = re.compile(
    r"<link[^>]+href=\"https?://[^\"]+\"[^>]*/?>|<script[^>]+src=\"https?://[^\"]+\"[^>]*>\s*</script>",
    re.IGNORECASE | re.DOTALL,
)


def strip_remote_resources(html: str) -> str:
    """Drop every <link>/<script> that would fetch from another host."""
    return _REMOTE_TAG.sub("", html)


def head_graph_html(
    graph: dict,
    labels: np.ndarray,
    keep: np.ndarray,
    salience: np.ndarray,
    layers: list[int] | None = None,
    clusters: list[int] | None = None,
    height: int = 620,
) -> str:
    """Self-contained HTML: heads placed by layer (x) and head (y), coloured by cluster,
    sized by salience, kept heads drawn as outlined stars; hover shows layer/head/salience/
    cluster. Only the chosen ``layers`` / ``clusters`` are drawn (all when None)."""
    n_heads = keep.shape[1]
    net = Network(height=f"{height}px", width="100%", cdn_resources="in_line", directed=False)
    net.toggle_physics(False)
    shown = set()
    for node in graph["nodes"]:
        layer, head = int(node["layer"]), int(node["head"])
        index = layer * n_heads + head
        cluster = int(labels[index])
        if (layers is not None and layer not in layers) or (
            clusters is not None and cluster not in clusters
        ):
            continue
        kept = bool(keep[layer, head])
        weight = float(salience[layer, head])
        net.add_node(
            node["id"],
            label=node["id"],
            x=layer * 170,
            y=head * 60,
            color={
                "background": cluster_color(cluster),
                "border": KEPT_COLOR if kept else cluster_color(cluster),
            },
            borderWidth=2 if kept else 1,
            shape="star" if kept else "dot",
            size=(14 + 18 * weight) if kept else (6 + 16 * weight),
            title=(
                f"layer {layer}, head {head}\nsalience {weight:.3f}\n"
                f"cluster {cluster}\n{'kept' if kept else 'pruned'}"
            ),
            font={"size": 10},
        )
        shown.add(node["id"])
    for edge in graph["edges"]:
        if edge["source"] in shown and edge["target"] in shown:
            net.add_edge(
                edge["source"],
                edge["target"],
                width=0.5 + 2.0 * float(edge.get("weight", 1.0)),
                color="#cbd5e1",
            )
    return strip_remote_resources(net.generate_html(notebook=False))
