"""User-facing errors: one clear line that names the problem and the fix."""

from __future__ import annotations


class CAHPError(ValueError):
    """An error caused by the user's input (model, data, options or run folder).

    The CLI prints ``str(error)`` on one line and exits non-zero; the dashboard shows it
    in the page. Messages say what was wrong *and* what to do about it.
    """


class UnsupportedArchitectureError(CAHPError):
    """The model is not a BERT-family encoder that CAHP knows how to prune."""


class DataError(CAHPError):
    """A data file or split is missing, malformed or unusable."""


class RunFolderError(CAHPError):
    """A run folder is missing, incompatible, corrupt or in use by another process."""


def earlier_version_error(run: str) -> RunFolderError:
    """The one message for a run clustered before the seed sweep and the authors' curve."""
    return RunFolderError(
        f"{run} was clustered by an earlier CAHP Studio (one t-SNE seed, the old quality "
        f"curve); re-cluster it with `cahp recluster {run}` (keeps its fine-tuned model)"
    )
