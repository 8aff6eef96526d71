"""The CAHP method: signatures, distances, clustering, the head graph, salience, the knee, the selection rules, baselines and diagnostics (arrays in, arrays out)."""
