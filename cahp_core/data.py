"""Tasks and data: SST-5, MNLI and user CSV/JSONL files; validation, tokenisation, batching.

Sources, in order: a local folder of ``<split>.jsonl``/``<split>.csv`` files (``data_dir``);
for ``sst5`` the copy bundled in this package (the offline default); otherwise the hub via
``datasets``. Every user mistake raises a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from cahp_core.errors import CAHPError, DataError

DATA_SUFFIXES = (".jsonl", ".csv")
MAX_FILE_BYTES = 2 * 1024**3
FOLDER_HINT = "a folder of JSON Lines laid out like train.jsonl, validation.jsonl"


@dataclass(frozen=True)
class TaskSpec:
    """How a task's records look and which splits train and evaluate.

    ``num_labels == 0`` (custom tasks only) means "infer as max label + 1 when loading".
    ``hub`` is ``(dataset id, config)`` for the online fallback.
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    num_labels: int
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str | None = "test"
    label_names: tuple[str, ...] | None = None
    hub: tuple[str, str | None] | None = None


TASKS: dict[str, TaskSpec] = {
    "sst5": TaskSpec(
        "sst5",
        ("text",),
        "label",
        5,
        label_names=("very negative", "negative", "neutral", "positive", "very positive"),
        hub=("SetFit/sst5", None),
    ),
    # MNLI (GLUE ids: entailment=0, neutral=1, contradiction=2). Offline folder: train,
    # validation_matched, validation_mismatched_hard. Evaluation and test both use
    # validation_matched; validation_mismatched_hard (the only labelled mismatched data
    # offline) is selectable by split name.
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
    """Validated records per split (each record: the text columns + an int ``label``)."""

    spec: TaskSpec
    splits: dict[str, list[dict]]
    source: str


def get_task(name: str) -> TaskSpec:
    """The built-in task called ``name`` (``sst5`` or ``mnli``)."""
    if name not in TASKS:
        raise DataError(
            f"unknown task {name!r}; use one of {', '.join(TASKS)} or 'custom' with --data-dir"
        )
    return TASKS[name]


def custom_task(
    text_columns: Sequence[str],
    label_column: str = "label",
    num_labels: int | None = None,
) -> TaskSpec:
    """A task for user files: one or two text columns; ``num_labels`` None = infer."""
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    columns = tuple(c.strip() for c in text_columns if c and c.strip())
    if not columns or len(columns) > 2:
        raise DataError(
            "a custom task needs one or two text columns (--text-columns a or a,b); "
            f"got {list(text_columns)}"
        )
    if not label_column or not label_column.strip():
        raise DataError("a custom task needs a label column (--label-column, e.g. label)")
    if num_labels is not None and num_labels < 2:
        raise DataError(f"--num-labels must be >= 2; got {num_labels}")
    return TaskSpec("custom", columns, label_column.strip(), num_labels or 0)


# ------------------------------------------------------------------ reading files


def _read_text(path: Path, where: str) -> str:
    if not path.is_file():
        raise DataError(f"data file {where} not found; check the path or --data-dir")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{where} is larger than 2 GiB; pass a smaller file or subset it")
    return decode_text(path.read_bytes(), where)


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 text (a leading BOM dropped); a DataError naming the line of a bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{where} is not UTF-8 text (bad byte at position {exc.start}, line {line}); "
            "re-save it as UTF-8"
        ) from None


def _parse_csv(text: str, where: str) -> tuple[list[dict], list[int]]:
    if csv.field_size_limit() < len(text):  # very long texts are fine (truncated later)
        csv.field_size_limit(len(text))
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    records: list[dict] = []
    lines: list[int] = []
    try:
        while True:
            start = reader.line_num + 1  # a quoted field may span several lines
            fields = next(reader, None)
            if fields is None:
                break
            if not fields:  # a blank line
                continue
            if header is None:
                header = [name.strip() for name in fields]
                continue
            if len(fields) > len(header):
                raise DataError(
                    f"{where} line {start} has more fields than the header "
                    f"({len(fields)} > {len(header)}); quote texts that contain commas"
                )
            record = dict(zip(header, fields, strict=False))
            if len(fields) < len(header):  # a short row: its last columns have no value
                record.update(dict.fromkeys(header[len(fields) :]))
            records.append(record)
            lines.append(start)
    except csv.Error as exc:
        raise DataError(
            f"{where} line {reader.line_num} is not valid CSV ({exc}); re-export it as CSV"
        ) from None
    return records, lines


def _parse_jsonl(text: str, where: str) -> tuple[list[dict], list[int]]:
    records: list[dict] = []
    lines: list[int] = []
    # split on "\n" only: str.splitlines would also split inside texts holding U+2028 etc.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where} line {number} is not valid JSON ({exc.msg}); write one JSON object a line"
            ) from None
        except RecursionError:
            raise DataError(
                f"{where} line {number} nests JSON too deeply; write one flat object a line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{where} line {number} is not a JSON object; write one object a line")
        records.append(record)
        lines.append(number)
    return records, lines


def parse_text(text: str, suffix: str, where: str) -> tuple[list[dict], list[int]]:
    """Rows of CSV or JSON Lines ``text`` as dicts, with the file line each row starts on."""
    return _parse_csv(text, where) if suffix.lower() == ".csv" else _parse_jsonl(text, where)


def read_rows(path: str | os.PathLike, name: str | None = None) -> tuple[list[dict], list[int]]:
    """Rows of a ``.jsonl`` or ``.csv`` file and their line numbers (not yet validated).

    ``name`` is how messages call the file (default: its path), e.g. an upload's own name.
    """
    path = Path(path)
    where = name or str(path)
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise DataError(f"{where}: unknown format {path.suffix!r}; use a .jsonl or .csv file")
    return parse_text(_read_text(path, where), path.suffix, where)


def read_records(path: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Rows of a ``.jsonl`` or ``.csv`` file as dicts (not yet validated)."""
    return read_rows(path, name)[0]


def split_files(folder: str | os.PathLike) -> dict[str, Path]:
    """``{split name: file}`` for every .jsonl/.csv file in ``folder`` (name = file stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} not found; pass an existing --data-dir")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in DATA_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(
                f"{folder} has two files for split {path.stem!r} ({files[path.stem].name}, "
                f"{path.name}); keep one"
            )
        files[path.stem] = path
    if not files:
        raise DataError(f"{folder} has no .jsonl or .csv split files; expected {FOLDER_HINT}")
    return files


def as_int_label(label: object) -> int | None:
    """An integer label from an int, a whole float or a digit string; None otherwise."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int | np.integer):
        return int(label)
    if isinstance(label, float) and label.is_integer():
        return int(label)
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        return int(label.strip())
    return None


def _column_fix(spec: TaskSpec, missing: Sequence[str], pickers: bool) -> str:
    """What to do about columns a file lacks: pick others, pass flags, or rename them."""
    if pickers:
        return "pick the text and label columns among them"
    if spec.name != "custom":
        needed = ", ".join((*spec.text_columns, spec.label_column))
        return (
            f"task {spec.name} reads {needed}: rename them, or use --task custom with "
            "--text-columns and --label-column"
        )
    flags = []
    if set(missing) & set(spec.text_columns):
        flags.append("--text-columns with one or two of them (a or a,b)")
    if spec.label_column in missing:
        flags.append("--label-column with the one holding the class ids 0, 1, 2, ...")
    return "pass " + " and ".join(flags)


def validate_records(
    records: list[dict],
    spec: TaskSpec,
    where: str,
    lines: Sequence[int] | None = None,
    pickers: bool = False,
) -> list[dict]:
    """Keep the task's columns, with an int ``label`` in range; a clear error otherwise.

    ``where`` names the file (or split) in messages, ``lines`` the file line of each record
    (messages say "row N" without it). ``pickers``: the user picks columns in the dashboard
    rather than with the CLI's flags.
    """
    if not records:
        raise DataError(f"{where} is empty; it needs at least one example")
    needed = (*spec.text_columns, spec.label_column)
    missing = [c for c in needed if c not in records[0]]
    if missing:
        raise DataError(
            f"{where} has no column(s) {', '.join(missing)}; columns found: "
            f"{', '.join(map(str, records[0])) or 'none'}; " + _column_fix(spec, missing, pickers)
        )
    other_column = (
        "pick the column that holds them as the label column"
        if pickers
        else "pass --label-column naming the column that holds them"
    )
    cleaned = []
    for index, record in enumerate(records):
        at = f"{where} line {lines[index]}" if lines else f"{where} row {index + 1}"
        absent = [c for c in needed if record.get(c) is None]
        if absent:
            raise DataError(
                f"{at} has no value for column(s) {', '.join(absent)}; fill it in "
                "(in a CSV file look for a short row or an unclosed quote)"
            )
        label = record[spec.label_column]
        value = as_int_label(label)
        if value is None:
            fix = f" or {other_column}" if spec.name == "custom" else ""
            raise DataError(
                f"{at}: label {label!r} is not an integer (column {spec.label_column!r}); "
                f"use class ids 0, 1, 2, ...{fix}"
            )
        if value < 0 or (spec.num_labels and value >= spec.num_labels):
            top = f"0..{spec.num_labels - 1}" if spec.num_labels else "0 or above"
            raise DataError(f"{at}: label {value} is outside {top} for task {spec.name}")
        texts = {c: str(record[c]) for c in spec.text_columns}
        cleaned.append({**texts, "label": value})
    return cleaned


def subset(records: list, n: int | None, seed: int) -> list:
    """A seeded subsample of ``n`` items, kept in their original order (all if n is None)."""
    if n is not None and n < 0:
        raise CAHPError(f"a subset size must be >= 0; got {n}")
    if n is None or n >= len(records):
        return list(records)
    chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    return [records[i] for i in chosen]


# ------------------------------------------------------------------ sources


def _bundled_folder(name: str) -> Path | None:
    """The copy of task ``name`` shipped inside the package, if any."""
    folder = resources.files("cahp_core").joinpath("bundled", name)
    return Path(str(folder)) if folder.is_dir() else None


def _from_hub(spec: TaskSpec) -> dict[str, list[dict]]:
    """Labelled splits of the task's hub dataset (unlabelled test splits are dropped)."""
    if spec.hub is None:
        raise DataError(f"task {spec.name} has no hub source; pass --data-dir with {FOLDER_HINT}")
    try:
        from datasets import load_dataset

        dataset = load_dataset(spec.hub[0], spec.hub[1])
    except Exception as exc:  # offline, missing dataset, ...: one clear line instead
        raise DataError(
            f"could not reach the hub to load {spec.name} ({spec.hub[0]}: {type(exc).__name__}); "
            f"pass --data-dir with {FOLDER_HINT}"
        ) from None
    splits = {name: [dict(r) for r in split] for name, split in dataset.items()}
    return {
        name: rows
        for name, rows in splits.items()
        if any(r.get(spec.label_column, -1) not in (-1, None) for r in rows)
    }


def peek_columns(path: Path) -> list[str]:
    """Column names on the first line of a data file ([] when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    first = next((line for line in head.split("\n") if line.strip()), "")
    if path.suffix.lower() == ".csv":
        return [c.strip() for c in next(csv.reader([first]), []) if c.strip()]
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return []
    return list(record) if isinstance(record, dict) else []


def _columns_found(data_dir: str | os.PathLike | None) -> str:
    """The "; columns found in train.csv: a, b" tail of a message ("" when unknown)."""
    try:
        files = split_files(data_dir) if data_dir is not None else {}
    except DataError:
        return ""
    path = files.get("train") or next(iter(files.values()), None)
    columns = peek_columns(path) if path is not None else []
    return f"; columns found in {path.name}: {', '.join(columns)}" if columns else ""


def _resolve_spec(
    name_or_spec: str | TaskSpec,
    data_dir: str | os.PathLike | None,
    text_columns: Sequence[str] | None,
    label_column: str,
    num_labels: int | None,
) -> TaskSpec:
    if isinstance(name_or_spec, TaskSpec):
        return name_or_spec
    if name_or_spec == "custom":
        if data_dir is None or not text_columns:
            raise DataError(
                "a custom task needs --data-dir (a folder with train and validation files), "
                "--text-columns naming one or two text columns (a or a,b) and --label-column "
                "naming the column of class ids (default: label)" + _columns_found(data_dir)
            )
        return custom_task(text_columns, label_column, num_labels)
    spec = get_task(name_or_spec)
    if text_columns and tuple(text_columns) != spec.text_columns:
        raise DataError(
            f"task {spec.name} reads column(s) {', '.join(spec.text_columns)}; "
            "--text-columns is for --task custom"
        )
    if label_column != spec.label_column:
        raise DataError(
            f"task {spec.name} reads labels from {spec.label_column!r}; "
            "--label-column is for --task custom"
        )
    if num_labels is not None and num_labels != spec.num_labels:
        raise DataError(
            f"task {spec.name} has {spec.num_labels} labels, not {num_labels}; "
            "--num-labels is for --task custom"
        )
    return spec


def load_task(
    name_or_spec: str | TaskSpec,
    data_dir: str | os.PathLike | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    num_labels: int | None = None,
) -> TaskData:
    """Load and validate every split of a task; seeded subsets of the train and eval splits.

    ``name_or_spec``: ``sst5``, ``mnli``, ``custom`` (needs ``data_dir`` + ``text_columns``;
    ``num_labels`` inferred as max label + 1 when not given) or a :class:`TaskSpec`.
    """
    for option, value in (("max-train", max_train), ("max-eval", max_eval)):
        if value is not None and value < 1:
            raise DataError(f"--{option} must be >= 1; got {value}")
    spec = _resolve_spec(name_or_spec, data_dir, text_columns, label_column, num_labels)
    files: dict[str, Path] = {}
    if data_dir is not None:
        files, source = split_files(data_dir), str(data_dir)
    elif (bundled := _bundled_folder(spec.name)) is not None:
        files, source = split_files(bundled), f"bundled:{spec.name}"
    lines: dict[str, list[int]] = {}
    if files:
        rows = {split: read_rows(path) for split, path in files.items()}
        raw = {split: records for split, (records, _) in rows.items()}
        lines = {split: numbers for split, (_, numbers) in rows.items()}
    else:
        raw, source = _from_hub(spec), f"hub:{spec.hub[0] if spec.hub else spec.name}"

    def where(split: str) -> str:
        return str(files[split]) if split in files else f"split {split!r} of {source}"

    for required in (spec.train_split, spec.eval_split):
        if required not in raw:
            raise DataError(
                f"split {required!r} not found in {source}; found {', '.join(raw) or 'none'}; "
                f"add {required}.jsonl (or .csv)"
            )
    if spec.num_labels == 0:  # custom task without --num-labels: infer from the training split
        train = spec.train_split
        labels = validate_records(raw[train], spec, where(train), lines.get(train))
        spec = replace(spec, num_labels=max(r["label"] for r in labels) + 1)
    splits = {
        split: validate_records(records, spec, where(split), lines.get(split))
        for split, records in raw.items()
    }
    _require_two_classes(splits[spec.train_split], where(spec.train_split))
    splits[spec.train_split] = subset(splits[spec.train_split], max_train, seed)
    splits[spec.eval_split] = subset(splits[spec.eval_split], max_eval, seed)
    return TaskData(spec, splits, source)


def _require_two_classes(records: list[dict], where: str) -> None:
    classes = sorted({r["label"] for r in records})
    if len(classes) < 2:
        raise DataError(
            f"{where} has a single class ({classes[0]}); a classifier needs examples of "
            "at least two labels"
        )


def load_task_from_file(
    path: str | os.PathLike,
    text_columns: Sequence[str],
    label_column: str = "label",
    num_labels: int | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    name: str | None = None,
) -> TaskData:
    """One uploaded CSV/JSONL file, split deterministically (seeded) into train and validation.

    ``name`` is how messages call the file (an upload's own name rather than the stored
    copy's path); columns are taken to be picked in the dashboard rather than by flags.
    """
    if not 0 < eval_fraction < 1:
        raise DataError(f"eval fraction must be in (0, 1); got {eval_fraction}")
    where = name or str(path)
    spec = custom_task(text_columns, label_column, num_labels)
    rows, lines = read_rows(path, where)
    records = validate_records(rows, spec, where, lines, pickers=True)
    if spec.num_labels == 0:
        spec = replace(spec, num_labels=max(r["label"] for r in records) + 1)
    _require_two_classes(records, where)
    n_eval = max(1, round(eval_fraction * len(records)))
    if len(records) - n_eval < 2:
        raise DataError(
            f"{where} has too few rows ({len(records)}) to split into train and validation; "
            "add more examples"
        )
    order = np.random.default_rng(seed).permutation(len(records))
    evaluation = [records[i] for i in sorted(order[:n_eval])]
    train = [records[i] for i in sorted(order[n_eval:])]
    _require_two_classes(train, f"{where} (training part after the split)")
    return TaskData(spec, {"train": train, "validation": evaluation}, str(path))


# ------------------------------------------------------------------ tokenisation


def split_texts(records: list[dict], spec: TaskSpec) -> tuple[list[str], list[str] | None]:
    """The first text column of every record, and the second one for pair tasks (else None)."""
    first = [r[spec.text_columns[0]] for r in records]
    second = [r[spec.text_columns[1]] for r in records] if len(spec.text_columns) > 1 else None
    return first, second


def tokenize_records(
    records: list[dict], tokenizer: PreTrainedTokenizerBase, spec: TaskSpec, max_length: int = 128
) -> list[dict]:
    """Token ids as int lists (no padding; the collator pads per batch), plus ``labels``.

    Texts (or pairs) longer than ``max_length`` tokens are truncated.
    """
    if not records:
        return []
    first, second = split_texts(records, spec)
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    return [
        {**{k: list(encoded[k][i]) for k in keys}, "labels": int(records[i]["label"])}
        for i in range(len(records))
    ]


def length_order(features: list[dict]) -> np.ndarray:
    """Indices of ``features`` longest first (stable), to batch similar lengths together."""
    lengths = np.array([len(f["input_ids"]) for f in features], dtype=np.int64)
    return np.argsort(-lengths, kind="stable")


def restore_order(values: Sequence, order: np.ndarray) -> list:
    """Put per-example ``values`` produced in ``order`` back in the original order."""
    if len(values) != len(order):
        raise ValueError(f"{len(values)} values for {len(order)} positions")
    restored: list = [None] * len(order)
    for value, index in zip(values, order, strict=True):
        restored[int(index)] = value
    return restored


def make_dataloader(
    features: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    sort_by_length: bool = False,
) -> DataLoader:
    """Batches with dynamic padding; shuffled with a seeded generator when asked.

    ``sort_by_length`` batches longest-first (less padding, faster inference); the loader's
    ``order`` attribute holds the original index of each example in iteration order (use
    :func:`restore_order`). ``order`` is None when shuffling.
    """
    if shuffle and sort_by_length:
        raise CAHPError("shuffle and sort_by_length exclude each other; choose one")
    if batch_size < 1:
        raise CAHPError(f"batch size must be >= 1; got {batch_size}")
    order = length_order(features) if sort_by_length else np.arange(len(features))
    loader = DataLoader(
        [features[i] for i in order] if sort_by_length else features,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    loader.order = None if shuffle else order
    return loader
