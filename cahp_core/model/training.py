"""Fine-tuning with transformers' Trainer and evaluation (accuracy, macro-F1, optional mask)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from cahp_core.data import TaskData, tokenize_records
from cahp_core.errors import CAHPError
from cahp_core.model.loaded_model import LoadedModel, pick_device
from cahp_core.model.loading import count_parameters, load_model
from cahp_core.model.masking import head_gates, keep_to_gates

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], message)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (paper defaults)."""

    epochs: float = 3.0
    learning_rate: float = 2e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42

    def validate(self) -> FinetuneConfig:
        if self.epochs <= 0:
            raise CAHPError(f"epochs must be > 0; got {self.epochs}")
        if self.learning_rate <= 0:
            raise CAHPError(f"learning rate must be > 0; got {self.learning_rate}")
        if self.batch_size < 1:
            raise CAHPError(f"batch size must be >= 1; got {self.batch_size}")
        if not 0 <= self.warmup_ratio < 1:
            raise CAHPError(f"warmup ratio must be in [0, 1); got {self.warmup_ratio}")
        return self


class _ProgressReporter(TrainerCallback):
    """Forwards Trainer progress to a ``(fraction, message)`` callback (the dashboard's)."""

    def __init__(self, callback: ProgressCallback):
        self.callback = callback

    def on_step_end(self, args, state, control, **kwargs):
        total = max(state.max_steps, 1)
        self.callback(state.global_step / total, f"step {state.global_step}/{total}")


def _training_args(config: FinetuneConfig, device: torch.device, output_dir: str):
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device.type == "cpu",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_features: Sequence[dict],
    config: FinetuneConfig | None = None,
    *,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> dict:
    """Fine-tune ``model`` in place on tokenised features; returns training statistics."""
    config = (config or FinetuneConfig()).validate()
    if len(train_features) == 0:
        raise CAHPError("the training split is empty; pass more data or a larger --max-train")
    callbacks = [_ProgressReporter(progress)] if progress else []
    with tempfile.TemporaryDirectory(prefix="cahp-trainer-") as scratch:
        trainer = make_trainer(
            model, tokenizer, train_features, config, scratch, device=device, callbacks=callbacks
        )
        result = trainer.train()
    model.eval()
    return {"train_loss": float(result.training_loss), **asdict(config)}


def make_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_features: Sequence[dict],
    config: FinetuneConfig,
    output_dir: str,
    *,
    device: str = "auto",
    callbacks: Sequence[TrainerCallback] = (),
) -> Trainer:
    """The Trainer ``finetune`` runs (its batches: ``get_train_dataloader()``); nothing is
    saved under ``output_dir``."""
    return Trainer(
        model=model,
        args=_training_args(config, pick_device(device), output_dir),
        train_dataset=list(train_features),
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=list(callbacks),
    )


@dataclass(frozen=True)
class EvalBatches:
    """Examples padded per batch in length order, collated once for any number of passes
    (the task curve evaluates the same examples under many head masks)."""

    order: np.ndarray  # [examples]: the input index of each row, in batch order
    batches: list[dict[str, torch.Tensor]]  # each [batch, longest in batch]
    labels: np.ndarray  # [examples], input order

    def __len__(self) -> int:
        return len(self.order)


def eval_batches(
    tokenizer: PreTrainedTokenizerBase, features: Sequence[dict], batch_size: int = 64
) -> EvalBatches:
    """``features`` sorted by length (stable) and padded per batch: little padding, and the
    same batches on every pass, so every pass gives the same logits."""
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    inputs = [{k: v for k, v in features[i].items() if k != "labels"} for i in order]
    collate = DataCollatorWithPadding(tokenizer)
    batches = [
        dict(collate(inputs[start : start + batch_size]))
        for start in range(0, len(inputs), batch_size)
    ]
    labels = np.array([f.get("labels", -1) for f in features], dtype=np.int64)
    return EvalBatches(order, batches, labels)


@torch.no_grad()  # inference_mode measured no faster here
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict] | EvalBatches,
    *,
    batch_size: int = 64,
    keep: np.ndarray | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Logits ``[examples, labels]`` in input order, optionally with heads outside ``keep``
    gated to zero. Pass ``eval_batches(...)`` to collate once for several passes (its own
    batch size then holds)."""
    model.eval()
    device = next(model.parameters()).device
    if not isinstance(features, EvalBatches):
        features = eval_batches(tokenizer, features, batch_size)
    gates = head_gates(model, keep_to_gates(keep)) if keep is not None else contextlib.nullcontext()
    chunks = []
    with gates:
        batches = tqdm(features.batches, desc="evaluate", disable=not show_progress, leave=False)
        for batch in batches:
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # [batch, labels]
            chunks.append(logits.float().cpu().numpy())
    n_labels = model.config.num_labels
    sorted_logits = np.concatenate(chunks) if chunks else np.zeros((0, n_labels), np.float32)
    result = np.empty_like(sorted_logits)  # [examples, labels]
    result[features.order] = sorted_logits
    return result


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict] | EvalBatches,
    *,
    batch_size: int = 64,
    keep: np.ndarray | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Predicted class per example, optionally with heads outside ``keep`` gated to zero."""
    logits = predict_logits(
        model, tokenizer, features, batch_size=batch_size, keep=keep, show_progress=show_progress
    )
    return logits.argmax(-1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of ``[examples, labels]`` logits (numerically stable)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def prediction_kl(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(reference || model) of the predicted class distributions, in nats: how far a
    pruned model's predictions moved from the full model's on the same examples (0 = none).
    Both arrays ``[examples, labels]``."""
    if reference_logits.shape != logits.shape:
        raise CAHPError(
            f"logit shapes differ: {reference_logits.shape} vs {logits.shape}; "
            "compare predictions on the same examples"
        )
    log_p, log_q = log_softmax(reference_logits), log_softmax(logits)  # [examples, labels]
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def logit_metrics(
    labels: np.ndarray, logits: np.ndarray, reference_logits: np.ndarray | None = None
) -> dict:
    """``classification_metrics`` of the logits' predictions, plus ``kl`` (``prediction_kl``
    from ``reference_logits``) when a reference is given. Logits ``[examples, labels]``."""
    metrics = classification_metrics(labels, logits.argmax(-1))
    if reference_logits is not None:
        metrics["kl"] = prediction_kl(reference_logits, logits)
    return metrics


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Accuracy, macro-F1 and the number of examples."""
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "n": int(len(labels)),
    }


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict] | EvalBatches,
    *,
    batch_size: int = 64,
    keep: np.ndarray | None = None,
    show_progress: bool = False,
    reference_logits: np.ndarray | None = None,
) -> dict:
    """Accuracy and macro-F1 of ``model`` on tokenised features (with an optional head mask),
    plus ``kl`` from ``reference_logits`` ``[examples, labels]`` when given."""
    if len(features) == 0:
        raise CAHPError("the evaluation split is empty; pass more data or a larger --max-eval")
    labels = (
        features.labels
        if isinstance(features, EvalBatches)
        else np.array([f["labels"] for f in features])
    )
    logits = predict_logits(
        model, tokenizer, features, batch_size=batch_size, keep=keep, show_progress=show_progress
    )
    return logit_metrics(labels, logits, reference_logits)


def quiet_transformers() -> None:
    """Silence transformers' info chatter (keeps warnings that matter)."""
    hf_logging.set_verbosity_error()


# share of a fine-tuning step's progress that training fills (evaluation, saving and the ONNX
# export share the rest), so a stage's fraction never moves backwards
FINETUNE_SHARE = 0.85


def finetune_pretrained(
    model: str,
    task: TaskData,
    config: FinetuneConfig,
    *,
    max_length: int,
    device: str = "auto",
    trust_remote_code: bool = False,
    progress: ProgressCallback | None = None,
    features: Callable[[str], list[dict]] | None = None,
) -> tuple[LoadedModel, dict]:
    """Load ``model`` with a new classifier head for ``task`` (initialised from
    ``config.seed``), fine-tune it on the task's training split and evaluate it on its
    evaluation split: what ``cahp run`` and ``cahp finetune`` both do first.

    ``features(split)``, when given, are the split's examples already tokenized with this
    model's tokenizer (a run tokenizes them once for all its stages).

    Returns the model and its report: ``accuracy``, ``macro_f1``, ``n``, ``split``,
    ``params`` and ``train`` (the training statistics)."""
    set_seed(config.seed)  # before loading: the new classifier's initialisation is seeded too
    loaded = load_model(
        model, task.spec.num_labels, device=device, trust_remote_code=trust_remote_code
    )

    def tokenized(split: str) -> list[dict]:
        if features is not None:
            return features(split)
        return tokenize_records(task.splits[split], loaded.tokenizer, task.spec, max_length)

    stats = finetune(
        loaded.model,
        loaded.tokenizer,
        tokenized(task.spec.train_split),
        config,
        device=device,
        progress=(lambda f, m: progress(FINETUNE_SHARE * f, m)) if progress else None,
    )
    if progress:
        progress(FINETUNE_SHARE, "evaluating the fine-tuned model")
    features = tokenized(task.spec.eval_split)
    metrics = evaluate(loaded.model, loaded.tokenizer, features, show_progress=progress is None)
    info = {"split": task.spec.eval_split, "params": count_parameters(loaded.model), "train": stats}
    return loaded, {**metrics, **info}
