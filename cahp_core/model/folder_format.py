"""The files of a pruned model folder (the run's export, any ``cahp export / prune --out``),
named once. Its kept-head map is recorded once, as ``cahp_kept_heads`` in config.json, and
re-applied on load (``pruning.read_keep``)."""

KEPT_HEADS_KEY = "cahp_kept_heads"
EXPORT_INFO = "cahp_export.json"  # what an export kept and measured
LEGACY_KEPT_HEADS_FILE = "kept_heads.json"  # the map's second copy in folders before 0.1.0
