"""A run in progress: its folder, configuration, data and the one loop that runs, reuses or
loads a stage's result. What each stage is (its inputs, how it computes, saves and loads its
result) is declared once in ``stages.py``; nothing here knows a particular stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cahp_core.data import TaskData, load_task, tokenize_records
from cahp_core.errors import CAHPError
from cahp_core.model.loaded_model import LoadedModel
from cahp_core.runs import run_format
from cahp_core.runs.config import RunConfig
from cahp_core.runs.folder import RunFolder, StageRecorder
from cahp_core.runs.run_format import MODEL, Artefact

# (stage, fraction done in [0, 1], message) -> None; the CLI logs it, the dashboard draws it
Progress = Callable[[str, float, str], None]


def no_progress(stage: str, fraction: float, message: str) -> None:
    pass


@dataclass(frozen=True)
class Stage:
    """One stage of a run: what it needs, how it computes its result, and how that result is
    saved to and loaded from the run folder.

    ``compute(ctx, recorder, **needed)`` receives the results of the stages in ``needs`` as
    keyword arguments named after them and returns this stage's result. A stage with an
    ``encode`` has its result written to ``artefact`` by the loop; one without writes the
    artefact itself (a model folder). A ``cached`` stage is reused once done (and ``current``,
    when given, says the done result still fits the run's settings); the others are
    recomputed on every run (they are cheap and depend on the degree)."""

    name: str
    compute: Callable[..., Any]
    artefact: Artefact
    needs: tuple[str, ...] = ()
    encode: Callable[[Any], Any] | None = None  # result -> what run_format.write stores
    decode: Callable[[RunContext, Any], Any] | None = None  # read file (or path) -> result
    cached: bool = True
    current: Callable[[RunContext], bool] | None = None
    describe: Callable[[Any], str] | None = None  # result -> the message once computed


@dataclass
class RunContext:
    """A run folder with its configuration, its data and the results of its stages (each
    computed, reused or loaded once per context, through ``result``)."""

    run: RunFolder
    config: RunConfig
    stages: Mapping[str, Stage]  # every stage, by name, in the order a run runs them
    progress: Progress = no_progress
    _results: dict[str, Any] = field(default_factory=dict, repr=False)
    _features: dict[str, list[dict]] = field(default_factory=dict, repr=False)

    # -- data
    @cached_property
    def task(self) -> TaskData:
        c = self.config
        return load_task(
            c.task,
            data_dir=c.data_dir,
            max_train=c.max_train,
            max_eval=c.max_eval,
            seed=c.seed,
            text_columns=c.text_columns,
            label_column=c.label_column,
            num_labels=c.num_labels,
        )

    @property
    def num_labels(self) -> int:
        return self.task.spec.num_labels

    @cached_property
    def tokenizer(self):
        from cahp_core.model.loading import load_tokenizer

        if self.run.is_done("finetune"):
            return load_tokenizer(MODEL.path(self.run.root))
        return load_tokenizer(self.config.model)

    def features(self, split: str) -> list[dict]:
        """The tokenized examples of ``split`` (tokenized once per context)."""
        if split not in self._features:
            if split not in self.task.splits:
                raise CAHPError(
                    f"split {split!r} not found for task {self.config.task!r}; "
                    f"available: {', '.join(self.task.splits)}"
                )
            self._features[split] = tokenize_records(
                self.task.splits[split], self.tokenizer, self.task.spec, self.config.max_length
            )
        return self._features[split]

    @property
    def train_features(self) -> list[dict]:
        return self.features(self.task.spec.train_split)

    @property
    def eval_features(self) -> list[dict]:
        return self.features(self.task.spec.eval_split)

    # -- stages
    def finetuned(self) -> LoadedModel:
        """The fine-tuned full model (fine-tunes it first if this run has none yet)."""
        return self.result("finetune")

    def use_model(self, model: LoadedModel | None) -> None:
        """Use a caller's already loaded fine-tuned model of this run (only ever deep-copied,
        never changed) instead of loading it again."""
        if model is not None:
            self._results["finetune"] = model

    def is_reusable(self, name: str) -> bool:
        """A cached stage that is done and still fits the run's settings."""
        stage = self.stages[name]
        return (
            stage.cached
            and self.run.is_done(name)
            and (stage.current is None or stage.current(self))
        )

    def result(self, name: str) -> Any:
        """The result of stage ``name``: from this context, from the run folder when the
        stage is reusable, or computed (after the stages it needs)."""
        if name not in self._results:
            self._results[name] = self.load(name) if self._reuse(name) else self._compute(name)
        return self._results[name]

    def ensure(self, name: str) -> None:
        """Make stage ``name`` done, without loading its result when it already is. A stage
        that is not done but whose every dependent is (a run whose distances are done does
        not need the signatures they came from) is not run now; should a dependent need it
        after all, ``result`` computes it then."""
        if name in self._results or self._reuse(name):
            return
        if self._not_needed(name):
            self.progress(name, 1.0, "not needed: the stages that use it are done")
            return
        self._results[name] = self._compute(name)

    def load(self, name: str) -> Any:
        """A finished stage's result, read from the run folder (a RunFolderError naming the
        stage to re-run when its file is missing)."""
        stage = self.stages[name]
        if stage.artefact.kind == "folder":
            raw = stage.artefact.path(self.run.root)
        else:
            raw = run_format.read(self.run.root, stage.artefact)
        return stage.decode(self, raw) if stage.decode else raw

    def _reuse(self, name: str) -> bool:
        """``is_reusable`` (checked once per visit: it hashes the artefacts), said on the
        stage's progress line when true."""
        if not self.is_reusable(name):
            return False
        self.progress(name, 1.0, "reused from the run folder")
        return True

    def _not_needed(self, name: str) -> bool:
        dependents = [s for s in self.stages.values() if name in s.needs]
        return bool(dependents) and all(s.cached and self.run.is_done(s.name) for s in dependents)

    def _compute(self, name: str) -> Any:
        """Compute stage ``name`` after the stages it needs; record it in the manifest."""
        stage = self.stages[name]
        needed = {n: self.result(n) for n in stage.needs}
        with self.run.stage(name) as recorder:
            value = stage.compute(self, recorder, **needed)
            if stage.encode is not None:
                run_format.write(self.run.root, stage.artefact, stage.encode(value))
            recorder.add_artefact(stage.artefact.file)
        self.progress(name, 1.0, stage.describe(value) if stage.describe else "done")
        return value

    def stage_progress(
        self, stage: str, start: float = 0.0, end: float = 1.0
    ) -> Callable[[float, str], None]:
        """A ``(fraction, message)`` callback reporting ``stage`` within ``[start, end]``,
        for one step of a stage that has several (fine-tuning, then evaluating, ...)."""
        return lambda fraction, message: self.progress(
            stage, start + (end - start) * fraction, message
        )


__all__ = ["Progress", "RunContext", "Stage", "StageRecorder", "no_progress"]
