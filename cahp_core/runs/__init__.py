"""Runs: the run configuration, the run-folder format, the stage registry and the pipeline over it, exports, and the read-only view of a finished run."""
