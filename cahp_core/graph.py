"""The global head graph: one node per head of every layer, kNN edges by distance."""

from __future__ import annotations

import networkx as nx
import numpy as np


def head_node_id(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def knn_edges(distance: np.ndarray, n_neighbors: int) -> set[tuple[int, int]]:
    """Undirected edges from each head to its ``n_neighbors`` nearest heads (symmetrised)."""
    n = len(distance)
    k = max(1, min(n_neighbors, n - 1))
    edges = set()
    for i in range(n):
        order = np.argsort(distance[i], kind="stable")
        neighbours = [j for j in order if j != i][:k]
        edges.update((min(i, j), max(i, j)) for j in neighbours)
    return edges


def build_head_graph(
    distance: np.ndarray,
    n_layers: int,
    n_heads: int,
    n_neighbors: int = 5,
    salience: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> nx.Graph:
    """All heads of all layers in one graph; edge weight = exp(-d / median distance)."""
    graph = nx.Graph()
    for index in range(n_layers * n_heads):
        layer, head = divmod(index, n_heads)
        graph.add_node(
            head_node_id(layer, head),
            layer=layer,
            head=head,
            index=index,
            salience=float(salience[layer, head]) if salience is not None else 0.0,
            cluster=int(labels[index]) if labels is not None else -1,
            kept=bool(keep[layer, head]) if keep is not None else False,
        )
    positive = distance[distance > 0]
    scale = float(np.median(positive)) if positive.size else 1.0
    for i, j in sorted(knn_edges(distance, n_neighbors)):
        d = float(distance[i, j])
        graph.add_edge(
            head_node_id(*divmod(i, n_heads)),
            head_node_id(*divmod(j, n_heads)),
            distance=d,
            weight=float(np.exp(-d / scale)),
        )
    return graph


def graph_to_json(graph: nx.Graph) -> dict:
    """Node-link JSON (plain Python types)."""
    return nx.node_link_data(graph, edges="edges")


def graph_from_json(data: dict) -> nx.Graph:
    return nx.node_link_graph(data, edges="edges")


def louvain_labels(graph: nx.Graph, resolution: float = 1.0, seed: int = 42) -> np.ndarray:
    """Louvain communities as a label per head (ordered by head index)."""
    communities = nx.community.louvain_communities(
        graph, weight="weight", resolution=resolution, seed=seed
    )
    labels = np.empty(graph.number_of_nodes(), dtype=int)
    for node_set in communities:
        members = sorted(graph.nodes[node]["index"] for node in node_set)
        labels[members] = members[0]
    return canonical_labels(labels)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 in order of their smallest member index (deterministic)."""
    mapping: dict[int, int] = {}
    for label in labels:
        mapping.setdefault(int(label), len(mapping))
    return np.array([mapping[int(label)] for label in labels], dtype=int)
