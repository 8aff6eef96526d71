"""The global head graph: one node per head of every layer, kNN edges by distance.

Edges join each head to its ``n_neighbors`` nearest heads (symmetrised, so a node may have
more). Edge ``distance`` is the head distance; ``weight = exp(-distance / median nonzero
distance)`` is a similarity in (0, 1] used by Louvain.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from cahp_core.errors import CAHPError


def head_node_id(layer: int, head: int) -> str:
    """Node name of a head, e.g. ``L3H7``."""
    return f"L{layer}H{head}"


def knn_edges(distance: np.ndarray, n_neighbors: int) -> set[tuple[int, int]]:
    """Undirected edges ``(i, j)``, ``i < j``, from each head to its ``n_neighbors`` nearest
    other heads (ties: lowest index), symmetrised."""
    n = len(distance)
    k = max(1, min(int(n_neighbors), n - 1))
    edges: set[tuple[int, int]] = set()
    for i in range(n):
        order = np.argsort(distance[i], kind="stable")  # [N]
        neighbours = order[order != i][:k]
        edges.update((min(i, int(j)), max(i, int(j))) for j in neighbours)
    return edges


def _check_map(name: str, value: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if value is not None and np.shape(value) != shape:
        raise CAHPError(f"{name} has shape {np.shape(value)}; expected {shape}")


def build_head_graph(
    distance: np.ndarray,
    n_layers: int,
    n_heads: int,
    n_neighbors: int = 5,
    salience: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> nx.Graph:
    """All heads of all layers in one graph ``[N = n_layers * n_heads nodes]``.

    Node attributes: layer, head, index (flat), salience (0.0 if None), cluster (-1 if
    None), kept (False if None). Edge attributes: distance, weight (> 0). Deterministic.
    """
    distance = np.asarray(distance, dtype=np.float64)
    n = n_layers * n_heads
    if distance.shape != (n, n):
        raise CAHPError(
            f"the distance matrix has shape {distance.shape}; expected ({n}, {n}) for "
            f"{n_layers} layers x {n_heads} heads"
        )
    if n < 2:
        raise CAHPError(f"a head graph needs at least 2 heads; got {n}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
        raise CAHPError(f"graph neighbours must be a whole number >= 1; got {n_neighbors!r}")
    if n_neighbors < 1:
        raise CAHPError(f"graph neighbours must be a whole number >= 1; got {n_neighbors}")
    _check_map("salience", salience, (n_layers, n_heads))
    _check_map("labels", labels, (n,))
    _check_map("keep", keep, (n_layers, n_heads))
    graph = nx.Graph()
    for index in range(n):
        layer, head = divmod(index, n_heads)
        graph.add_node(
            head_node_id(layer, head),
            layer=int(layer),
            head=int(head),
            index=int(index),
            salience=float(salience[layer, head]) if salience is not None else 0.0,
            cluster=int(labels[index]) if labels is not None else -1,
            kept=bool(keep[layer, head]) if keep is not None else False,
        )
    positive = distance[distance > 0]
    scale = float(np.median(positive)) if positive.size else 1.0
    tiny = float(np.finfo(np.float64).tiny)  # keeps far-away edges strictly positive
    for i, j in sorted(knn_edges(distance, n_neighbors)):
        d = float(distance[i, j])
        graph.add_edge(
            head_node_id(*divmod(i, n_heads)),
            head_node_id(*divmod(j, n_heads)),
            distance=d,
            weight=max(float(np.exp(-d / scale)), tiny),
        )
    return graph


def graph_to_json(g: nx.Graph) -> dict:
    """Node-link JSON (plain Python types; edges under ``"edges"``)."""
    return nx.node_link_data(g, edges="edges")


def louvain_labels(graph: nx.Graph, resolution: float = 1.0, seed: int = 42) -> np.ndarray:
    """Louvain communities (weight = similarity) as a canonical label per node ``index``."""
    communities = nx.community.louvain_communities(
        graph, weight="weight", resolution=resolution, seed=seed
    )
    labels = np.empty(graph.number_of_nodes(), dtype=np.int64)  # [N]
    for node_set in communities:
        members = sorted(graph.nodes[node]["index"] for node in node_set)
        labels[members] = members[0]
    return canonical_labels(labels)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 in order of their smallest member index (deterministic)."""
    mapping: dict[int, int] = {}
    for label in labels:
        mapping.setdefault(int(label), len(mapping))
    return np.array([mapping[int(label)] for label in labels], dtype=np.int64)
