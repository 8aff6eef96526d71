"""Tasks and data: SST-5, MNLI and user CSV/JSONL files; validation, tokenisation, batching.

Sources, in order: a local folder of ``<split>.jsonl``/``<split>.csv`` files (``data_dir``);
for ``sst5`` the copy bundled in this package (the offline default); otherwise the hub via
``datasets``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .errors import DataError

DATA_SUFFIXES = (".jsonl", ".csv")
MAX_FILE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class TaskSpec:
    """How a task's records look and which splits train and evaluate."""

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    num_labels: int
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str | None = "test"
    label_names: tuple[str, ...] | None = None
    hub: tuple[str, str | None] | None = None  # (dataset id, config)


TASKS: dict[str, TaskSpec] = {
    "sst5": TaskSpec(
        "sst5",
        ("text",),
        "label",
        5,
        label_names=("very negative", "negative", "neutral", "positive", "very positive"),
        hub=("SetFit/sst5", None),
    ),
    # validation_mismatched_hard (the only labelled mismatched data offline) is selectable
    # by split name; the default evaluation and test split is validation_matched.
    "mnli": TaskSpec(
        "mnli",
        ("premise", "hypothesis"),
        "label",
        3,
        eval_split="validation_matched",
        test_split="validation_matched",
        label_names=("entailment", "neutral", "contradiction"),
        hub=("nyu-mll/glue", "mnli"),
    ),
}


@dataclass
class TaskData:
    """Validated records per split (each record: text columns + an int ``label``)."""

    spec: TaskSpec
    splits: dict[str, list[dict]]
    source: str


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise DataError(
            f"unknown task {name!r}; use one of {', '.join(TASKS)} or 'custom' with --data-dir"
        )
    return TASKS[name]


def custom_task(
    text_columns: tuple[str, ...] | list[str],
    label_column: str = "label",
    num_labels: int | None = None,
) -> TaskSpec:
    if not text_columns or len(text_columns) > 2:
        raise DataError("a custom task needs one or two text columns (--text-columns a or a,b)")
    return TaskSpec("custom", tuple(text_columns), label_column, num_labels or 0)


# ------------------------------------------------------------------ reading files


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"data file {path} not found; check --data-dir")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path} is larger than 2 GiB; pass a smaller file or subset it")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (bad byte at position {exc.start}); re-save it as UTF-8"
        ) from None


def read_records(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``.jsonl`` or ``.csv`` file as dicts."""
    path = Path(path)
    if path.suffix not in DATA_SUFFIXES:
        raise DataError(f"{path}: unknown format {path.suffix!r}; use .jsonl or .csv")
    text = _read_text(path)
    if path.suffix == ".csv":
        try:
            return list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise DataError(f"{path} is not a valid CSV file ({exc})") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number} is not a JSON object")
        records.append(record)
    return records


def split_files(folder: str | os.PathLike) -> dict[str, Path]:
    """``{split name: file}`` for every .jsonl/.csv file in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} not found; pass an existing --data-dir")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in DATA_SUFFIXES}
    if not files:
        raise DataError(
            f"{folder} has no .jsonl or .csv split files; expected e.g. train.jsonl, validation.jsonl"
        )
    return files


def as_int_label(label: object) -> int | None:
    """An integer label from an int, a whole float or a digit string; None otherwise."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label
    if isinstance(label, float) and label.is_integer():
        return int(label)
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        return int(label.strip())
    return None


def validate_records(records: list[dict], spec: TaskSpec, where: str) -> list[dict]:
    """Keep the task's columns, check labels are integers in range; clear errors otherwise."""
    if not records:
        raise DataError(f"{where} is empty; it needs at least one example")
    columns = set(records[0])
    missing = [c for c in (*spec.text_columns, spec.label_column) if c not in columns]
    if missing:
        raise DataError(
            f"{where} has no column(s) {', '.join(missing)}; columns found: {', '.join(sorted(columns))}"
        )
    cleaned = []
    for row, record in enumerate(records, start=1):
        label = record.get(spec.label_column)
        value = as_int_label(label)
        if value is None:
            raise DataError(f"{where} row {row}: label {label!r} is not an integer")
        if spec.num_labels and not 0 <= value < spec.num_labels:
            raise DataError(
                f"{where} row {row}: label {value} is outside 0..{spec.num_labels - 1} for task {spec.name}"
            )
        texts = {c: "" if record.get(c) is None else str(record[c]) for c in spec.text_columns}
        cleaned.append({**texts, "label": value})
    return cleaned


def subset(records: list, n: int | None, seed: int) -> list:
    """A seeded subsample of ``n`` records, kept in their original order (all if n is None)."""
    if n is None or n >= len(records):
        return list(records)
    chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    return [records[i] for i in chosen]


# ------------------------------------------------------------------ sources


def _bundled_folder(name: str) -> Path | None:
    folder = resources.files("cahp_core") / "bundled" / name
    return Path(str(folder)) if folder.is_dir() else None


def _from_folder(folder: Path, spec: TaskSpec) -> dict[str, list[dict]]:
    return {split: read_records(path) for split, path in split_files(folder).items()}


def _from_hub(spec: TaskSpec) -> dict[str, list[dict]]:
    if spec.hub is None:
        raise DataError(f"task {spec.name} has no hub source; pass --data-dir")
    try:
        from datasets import load_dataset

        dataset = load_dataset(spec.hub[0], spec.hub[1])
    except Exception as exc:  # offline, missing dataset, ...: one clear line instead
        raise DataError(
            f"could not load {spec.name} from the hub ({type(exc).__name__}); pass --data-dir with "
            "a folder of JSON Lines such as train.jsonl, validation.jsonl"
        ) from None
    return {name: [dict(r) for r in split] for name, split in dataset.items()}


def load_task(
    name_or_spec: str | TaskSpec,
    data_dir: str | os.PathLike | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    text_columns: tuple[str, ...] | None = None,
    label_column: str = "label",
    num_labels: int | None = None,
) -> TaskData:
    """Load and validate a task's splits, with seeded train/eval subsets."""
    if isinstance(name_or_spec, TaskSpec):
        spec = name_or_spec
    elif name_or_spec == "custom":
        if data_dir is None or not text_columns:
            raise DataError("a custom task needs --data-dir and --text-columns")
        spec = custom_task(text_columns, label_column, num_labels)
    else:
        spec = get_task(name_or_spec)
    if data_dir is not None:
        raw, source = _from_folder(Path(data_dir), spec), str(data_dir)
    elif (bundled := _bundled_folder(spec.name)) is not None:
        raw, source = _from_folder(bundled, spec), f"bundled:{spec.name}"
    else:
        raw, source = _from_hub(spec), f"hub:{spec.hub[0] if spec.hub else spec.name}"
    files = split_files(data_dir) if data_dir is not None else {}
    if spec.num_labels == 0:  # custom task without --num-labels: infer from the training split
        labels = validate_records(
            raw.get(spec.train_split, []), spec, _where(files, spec.train_split)
        )
        spec = replace(spec, num_labels=max(r["label"] for r in labels) + 1)
    for required in (spec.train_split, spec.eval_split):
        if required not in raw:
            raise DataError(
                f"split {required!r} not found in {source}; found {', '.join(raw) or 'none'}"
            )
    splits = {
        split: validate_records(rows, spec, _where(files, split)) for split, rows in raw.items()
    }
    classes = {r["label"] for r in splits[spec.train_split]}
    if len(classes) < 2:
        raise DataError(
            f"{_where(files, spec.train_split)} has a single class ({classes.pop()}); "
            "a classifier needs at least two"
        )
    splits[spec.train_split] = subset(splits[spec.train_split], max_train, seed)
    splits[spec.eval_split] = subset(splits[spec.eval_split], max_eval, seed)
    return TaskData(spec, splits, source)


def _where(files: dict[str, Path], split: str) -> str:
    return str(files[split]) if split in files else f"split {split!r}"


def load_task_from_file(
    path: str | os.PathLike,
    text_columns: tuple[str, ...] | list[str],
    label_column: str = "label",
    num_labels: int | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """One uploaded CSV/JSONL file, split deterministically into train and validation."""
    if not 0 < eval_fraction < 1:
        raise DataError(f"eval fraction must be in (0, 1); got {eval_fraction}")
    spec = custom_task(tuple(text_columns), label_column, num_labels)
    rows = read_records(path)
    if spec.num_labels == 0:
        labels = validate_records(rows, spec, str(path))
        spec = replace(spec, num_labels=max(r["label"] for r in labels) + 1)
    records = validate_records(rows, spec, str(path))
    if len({r["label"] for r in records}) < 2:
        raise DataError(f"{path} has a single class; a classifier needs at least two")
    order = np.random.default_rng(seed).permutation(len(records))
    n_eval = max(1, int(round(eval_fraction * len(records))))
    if len(records) - n_eval < 1:
        raise DataError(
            f"{path} has too few rows ({len(records)}) to split into train and validation"
        )
    evaluation = [records[i] for i in sorted(order[:n_eval])]
    train = [records[i] for i in sorted(order[n_eval:])]
    return TaskData(spec, {"train": train, "validation": evaluation}, str(path))


# ------------------------------------------------------------------ tokenisation


def split_texts(records: list[dict], spec: TaskSpec) -> tuple[list[str], list[str] | None]:
    first = [r[spec.text_columns[0]] for r in records]
    second = [r[spec.text_columns[1]] for r in records] if len(spec.text_columns) > 1 else None
    return first, second


def tokenize_records(
    records: list[dict], tokenizer: PreTrainedTokenizerBase, spec: TaskSpec, max_length: int = 128
) -> list[dict]:
    """Token ids (no padding; the collator pads per batch), truncated to ``max_length``."""
    if not records:
        return []
    first, second = split_texts(records, spec)
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    return [
        {**{k: encoded[k][i] for k in keys}, "labels": records[i]["label"]}
        for i in range(len(records))
    ]


def make_dataloader(
    features: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """Batches with dynamic padding; shuffled with a seeded generator when asked."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        features,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
