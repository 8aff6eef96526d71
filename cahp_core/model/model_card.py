"""The model card of a pruned folder: a Hugging Face style ``README.md`` + ``heads_kept.svg``.

Everything in the card comes from the folder's kept-head map and export record
(``pruning.card_head_map``), its ``config.json`` and file sizes measured on disk; a field that was not recorded is left out
or says "not recorded", never guessed.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from cahp_core.atomic import write_text_atomic
from cahp_core.errors import CAHPError

CARD_FILE = "README.md"
FIGURE_FILE = "heads_kept.svg"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
ONNX_SUFFIXES = (".onnx", ".onnx.data", ".onnx_data")
NOT_RECORDED = "not recorded"
HUB_ALIASES = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HEAD_MAP_KEYS = ("n_layers", "n_heads", "kept", "heads_kept")
_LOAD_DIR = "path/to/this/folder"
_MAX_HEADER = 100 << 20  # a safetensors header larger than this is not one

RULE_TEXT = {
    "complementary": "the most salient head of each cluster (the CAHP paper's rule)",
    "salience-radius": "salient heads, skipping heads closer than a distance quantile to a kept one",
    "mmr": "maximal marginal relevance: salience traded against redundancy",
}


# ------------------------------------------------------------------------------ inputs


def _check_head_map(head_map: Any) -> list[list[int]]:
    """The kept head indices per layer, after checking ``head_map`` (``card_head_map``)."""
    if not isinstance(head_map, dict) or not all(k in head_map for k in ("n_heads", "kept")):
        raise CAHPError(
            "a model card needs the kept-head map (with 'n_heads' and 'kept', as "
            "pruning.card_head_map gives it); re-export the pruned model"
        )
    kept, n_heads = head_map["kept"], head_map["n_heads"]
    valid = (
        isinstance(n_heads, int)
        and n_heads > 0
        and isinstance(kept, list)
        and all(
            isinstance(row, list) and all(isinstance(h, int) and 0 <= h < n_heads for h in row)
            for row in kept
        )
    )
    if not valid or head_map.get("n_layers", len(kept)) != len(kept):
        raise CAHPError(
            "the kept-head map is corrupt: 'kept' must list, for each of 'n_layers' layers, head "
            f"indices below 'n_heads'; re-export the pruned model (got n_heads={n_heads!r})"
        )
    return [sorted(row) for row in kept]


def _fields(head_map: dict) -> dict:
    """The recorded facts: ``head_map``'s extra keys with its ``cahp`` info merged in."""
    fields = {k: v for k, v in head_map.items() if k not in (*_HEAD_MAP_KEYS, "cahp")}
    info = head_map.get("cahp")
    if isinstance(info, dict):
        fields.update(info)
    return fields


def _number(value: Any) -> float | None:
    """``value`` if it is a finite real number (bools and strings are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _config(folder: Path) -> dict:
    """The folder's config.json (empty if missing or unreadable)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _hub_id(model: Any) -> str | None:
    """A Hugging Face hub id for ``model`` (an alias or ``owner/name``), else None."""
    if not isinstance(model, str):
        return None
    if model in HUB_ALIASES:
        return HUB_ALIASES[model]
    if _HUB_ID.match(model) and not Path(model).exists():
        return model
    return None


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _safetensors_params(path: Path) -> int | None:
    """Number of values stored in a safetensors file, read from its header (None if unreadable)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER:
                return None
            header = json.loads(handle.read(length))
        return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def _counted_params(folder: Path) -> int | None:
    """Parameters counted in the folder's safetensors weights (None without them)."""
    files = [p for p in _weight_files(folder) if p.suffix == ".safetensors"]
    counts = [_safetensors_params(p) for p in files]
    if not files or any(c is None for c in counts):
        return None
    return sum(counts)


# ------------------------------------------------------------------------------ formatting


def _megabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.2f} MB ({int(n_bytes):,} bytes)"


def _metric(value: Any) -> str:
    number = _number(value)
    return NOT_RECORDED if number is None else f"{number:.4f}"


def _reduction(before: float | None, after: float | None) -> str:
    if before is None or after is None or before <= 0:
        return ""
    change = (1 - after / before) * 100
    return f" ({change:.1f} % smaller)" if change >= 0 else f" ({-change:.1f} % larger)"


def _scalar(value: Any) -> str:
    number = _number(value)
    if number is not None:
        return f"{number:g}" if isinstance(value, float) else str(value)
    return f"`{value}`" if isinstance(value, str) else json.dumps(value)


def _yaml_list(key: str, values: list[str]) -> list[str]:
    return [f"{key}:", *(f"- {json.dumps(v)}" for v in values)]


# ------------------------------------------------------------------------------ sections


def _front_matter(fields: dict, config: dict) -> list[str]:
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    base = _hub_id(fields.get("model"))
    if base:
        lines.append(f"base_model: {json.dumps(base)}")
    tags = ["pruning", "attention-head-pruning", "cahp", "text-classification"]
    if isinstance(config.get("model_type"), str):
        tags.append(config["model_type"])
    return [*lines, *_yaml_list("tags", tags), "---", ""]


def _overview(fields: dict, config: dict, kept: list[list[int]], n_heads: int) -> list[str]:
    total, n_kept = len(kept) * n_heads, sum(len(row) for row in kept)
    model_type = config.get("model_type", "transformer")
    lines = [
        f"# Pruned {model_type} classifier: {n_kept} of {total} attention heads kept",
        "",
        "Attention heads were physically removed with CAHP Studio (Complementary Attention "
        "Head Pruning); layers may keep different numbers of heads, and a layer that keeps "
        "none passes its input through unchanged.",
        "",
    ]
    model = fields.get("model")
    base = _hub_id(model)
    if isinstance(model, str):
        shown = f"[{base}](https://huggingface.co/{base})" if base else f"`{model}`"
        alias = f" (alias `{model}`)" if base and base != model else ""
        lines.append(f"- **Base model:** {shown}{alias}")
    elif isinstance(fields.get("source"), str):
        lines.append(f"- **Pruned from:** `{fields['source']}`")
    else:
        lines.append(f"- **Base model:** {NOT_RECORDED}")
    task = fields.get("task")
    lines.append(f"- **Task:** {f'`{task}`' if isinstance(task, str) else NOT_RECORDED}")
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels != {str(i): f"LABEL_{i}" for i in range(len(labels))}:
        named = ", ".join(
            f"{k} = {v}" for k, v in sorted(labels.items(), key=lambda kv: (len(kv[0]), kv[0]))
        )
        lines.append(f"- **Labels:** {named}")
    lines.append(f"- **Heads kept:** {n_kept} of {total} ({n_kept / total * 100:.1f} %)")
    return [*lines, ""]


def _heads_section(kept: list[list[int]], n_heads: int) -> list[str]:
    lines = [
        "## Heads kept per layer",
        "",
        f"![Heads kept per layer]({FIGURE_FILE})",
        "",
        "| Layer | Heads kept | Kept head indices |",
        "|---:|---:|---|",
    ]
    for layer, row in enumerate(kept):
        indices = ", ".join(str(h) for h in row) if row else "none (attention removed)"
        lines.append(f"| {layer} | {len(row)} of {n_heads} | {indices} |")
    lines += [
        "",
        "The map is recorded in `config.json` (`cahp_kept_heads`) and re-applied on load.",
        "",
    ]
    return lines


def _method_line(fields: dict) -> str:
    method, n_kept = fields.get("method"), fields.get("heads_kept")
    budget = f"the {n_kept} " if isinstance(n_kept, int) else "the "
    if method == "gradient":
        norm = fields.get("normalise_per_layer")
        how = {True: ", normalised per layer", False: ", not normalised per layer"}.get(norm, "")
        return (
            f"gradient-importance baseline (Michel et al., 2019): {budget}heads with the "
            f"largest accumulated |dL/d gate|{how}"
        )
    if method == "random":
        return f"random baseline: {budget}heads drawn uniformly at random"
    if isinstance(method, str):
        return f"`{method}`"
    rule = fields.get("rule")
    if isinstance(rule, dict) or "degree" in fields:
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            return "CAHP (selection rule not recorded)"
        text = RULE_TEXT.get(name)
        return f"CAHP, selection rule `{name}`" + (f": {text}" if text else "")
    if "source" in fields:
        return "manual head list (`cahp prune --remove ...`)"
    return NOT_RECORDED


def _selection_section(fields: dict) -> list[str]:
    lines = ["## How the heads were selected", "", f"- **Method:** {_method_line(fields)}"]
    rule = fields.get("rule")
    if isinstance(rule, dict):
        for key, value in rule.items():
            if key != "name":
                lines.append(f"- **Rule parameter `{key}`:** {_scalar(value)}")
    for key, label in (("degree", "Degree"), ("knee_curve", "Knee curve"), ("knee", "Knee")):
        if key in fields:
            lines.append(f"- **{label}:** {_scalar(fields[key])}")
    if "consensus_seed" in fields:
        lines.append(f"- **Consensus seed:** {_scalar(fields['consensus_seed'])}")
    by_seed = fields.get("heads_by_seed")
    if isinstance(by_seed, dict) and by_seed:
        counts = [_number(n) for n in by_seed.values()]
        if all(c is not None for c in counts):
            seeds = ", ".join(str(s) for s in by_seed)
            low, high = int(min(counts)), int(max(counts))
            spread = str(low) if low == high else f"{low} to {high}"
            lines.append(f"- **Heads kept across seeds ({seeds}):** {spread}")
    if "seed" in fields:
        lines.append(f"- **Seed:** {_scalar(fields['seed'])}")
    return [*lines, ""]


def _results_section(fields: dict) -> list[str]:
    rows = [
        ("Full model (all heads)", "accuracy_full", "macro_f1_full"),
        ("Heads masked (before fine-tuning)", "accuracy_masked", "macro_f1_masked"),
        ("Pruned, fine-tuned once", "accuracy_pruned", "macro_f1_pruned"),
        ("Pruned, int8 ONNX", "accuracy_int8", "macro_f1_int8"),
    ]
    recorded = [r for r in rows if any(_number(fields.get(k)) is not None for k in r[1:])]
    lines = ["## Accuracy", ""]
    if not recorded:
        return [*lines, f"Accuracy: {NOT_RECORDED}.", ""]
    lines += ["| Model | Accuracy | Macro-F1 |", "|---|---:|---:|"]
    for label, acc, f1 in recorded:
        lines.append(f"| {label} | {_metric(fields.get(acc))} | {_metric(fields.get(f1))} |")
    split, n_eval = fields.get("eval_split"), _number(fields.get("n_eval"))
    where = []
    if n_eval is not None:
        where.append(f"{int(n_eval):,} examples")
    if isinstance(split, str):
        where.append(f"the `{split}` split")
    if where:
        lines += ["", f"Evaluated on {' of '.join(where)}."]
    return [*lines, ""]


def _count(n: float | None) -> str:
    return NOT_RECORDED if n is None else f"{int(n):,}"


def _bytes(n: float | None, note: str = "") -> str:
    return NOT_RECORDED if n is None else _megabytes(n) + note


def _onnx_lines(fields: dict, folder: Path) -> list[str]:
    """Measured sizes of the folder's ONNX files and the recorded ``onnx`` facts."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(ONNX_SUFFIXES))
    lines = []
    if files:
        sizes = ", ".join(f"`{p.name}` {_megabytes(p.stat().st_size)}" for p in files)
        lines += ["", f"ONNX: {sizes}."]
    onnx = fields.get("onnx")
    if isinstance(onnx, dict):
        facts = [
            f"- ONNX {k}: {_scalar(v)}" for k, v in onnx.items() if not isinstance(v, dict | list)
        ]
        lines += ["", *facts] if facts else []
    return lines


def _size_section(fields: dict, folder: Path) -> list[str]:
    p_full, p_pruned = _number(fields.get("params_full")), _number(fields.get("params_pruned"))
    counted = p_pruned is None
    if counted:
        p_pruned = _counted_params(folder)
    weights = _weight_files(folder)
    size_after = float(sum(p.stat().st_size for p in weights)) if weights else None
    size_before, before_note = _number(fields.get("size_full_bytes")), ""
    if size_before is None and p_full is not None:
        size_before, before_note = p_full * 4, " (estimated: parameters x 4 bytes, float32)"
    counted_note = " (counted in the weight files)" if counted and p_pruned is not None else ""
    lines = [
        "## Size",
        "",
        "| | Before pruning | After pruning |",
        "|---|---:|---:|",
        f"| Parameters | {_count(p_full)} | {_count(p_pruned)}{counted_note}"
        f"{_reduction(p_full, p_pruned)} |",
        f"| Weight files | {_bytes(size_before, before_note)} | {_bytes(size_after)}"
        f"{_reduction(size_before, size_after)} |",
    ]
    if weights:
        names = ", ".join(f"`{p.name}`" for p in weights)
        lines += ["", f"The size after pruning is measured on {names} in this folder."]
    return [*lines, *_onnx_lines(fields, folder), ""]


def _latency_items(label: str, value: Any, unit: str) -> list[str]:
    """Bullet lines for a measured latency (a number, or nested dicts of numbers)."""
    number = _number(value)
    if number is not None:
        return [f"- **{label}:** {number:g}{unit}"]
    if isinstance(value, dict):
        return [i for k, v in value.items() for i in _latency_items(f"{label}, {k}", v, unit)]
    return []


LATENCY_CONDITIONS = ("batch", "tokens", "threads", "repeats")  # how it was measured
LATENCY_NAMES = {
    "full_pytorch": "full model, PyTorch",
    "pruned_pytorch": "pruned, PyTorch",
    "pruned_fp32_onnx": "pruned, ONNX Runtime (fused, fp32)",
    "pruned_int8_onnx": "pruned, ONNX Runtime (fused, int8)",
}


def _latency_table(value: dict) -> list[str]:
    """The export's own measurement (``latency_ms``): a table and its conditions."""
    rows = [(k, _number(v)) for k, v in value.items() if k not in LATENCY_CONDITIONS]
    lines = ["| Model | Median latency |", "|---|---:|"]
    lines += [f"| {LATENCY_NAMES.get(k, k)} | {ms:.2f} ms |" for k, ms in rows if ms is not None]
    conditions = ", ".join(
        f"{k} {value[k]}" for k in LATENCY_CONDITIONS if _number(value.get(k)) is not None
    )
    note = (
        f"Measured on the exporting machine's CPU at export time ({conditions}), timed "
        "interleaved; a quick indication, not a benchmark (`benchmarks/deployment.py`)."
    )
    return [*lines, "", note]


def _latency_section(fields: dict) -> list[str]:
    if isinstance(fields.get("latency_ms"), dict) and "batch" in fields["latency_ms"]:
        return ["## Latency", "", *_latency_table(fields["latency_ms"]), ""]
    items = []
    for key, value in fields.items():
        if key.startswith("latency"):
            words = key.split("_")
            unit = " ms" if "ms" in words else ""
            label = " ".join(w for w in words if w != "ms").capitalize()
            items += _latency_items(label, value, unit)
    return ["## Latency", "", *(items or [f"Latency: {NOT_RECORDED}."]), ""]


def _reproduce_section(fields: dict) -> list[str]:
    command = fields.get("command")
    lines = ["## Reproduce", ""]
    if not isinstance(command, str) or not command.strip():
        return [*lines, f"Command: {NOT_RECORDED}.", ""]
    return [*lines, "```bash", command.strip(), "```", ""]


def _loading_section() -> list[str]:
    return [
        "## How to load",
        "",
        "With CAHP Studio installed:",
        "",
        "```python",
        "from cahp_core.model.pruning import load_pruned",
        "",
        f'loaded = load_pruned("{_LOAD_DIR}")  # loaded.model, loaded.tokenizer',
        "```",
        "",
        "With plain `transformers` (and torch) only: the folder ships `modeling_cahp_pruned.py`, "
        "which `trust_remote_code=True` runs to rebuild the pruned layers:",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        "model = AutoModelForSequenceClassification.from_pretrained(",
        f'    "{_LOAD_DIR}", trust_remote_code=True',
        ")",
        f'tokenizer = AutoTokenizer.from_pretrained("{_LOAD_DIR}")',
        "```",
        "",
    ]


# ------------------------------------------------------------------------------ figure


def heads_figure(kept: list[list[int]], n_heads: int) -> str:
    """A small SVG bar chart: heads kept (of ``n_heads``) per layer."""
    bar, gap, plot_h, left, top, bottom = 24, 8, 120, 36, 28, 36
    width = max(220, left + len(kept) * (bar + gap) + gap)  # room for the title
    height = top + plot_h + bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>Heads kept per layer (of {n_heads})</title>",
        f'<text x="{left}" y="16">Heads kept per layer (of {n_heads})</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - gap}" y2="{top + plot_h}" '
        'stroke="#555"/>',
    ]
    for layer, row in enumerate(kept):
        x = left + gap + layer * (bar + gap)
        h = round(plot_h * len(row) / n_heads, 2)
        y = round(top + plot_h - h, 2)
        parts += [
            f'<rect x="{x}" y="{top}" width="{bar}" height="{plot_h}" fill="#eeeeee"/>',
            f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="#3b6ea8"/>',
            f'<text x="{x + bar / 2}" y="{y - 3}" text-anchor="middle">{len(row)}</text>',
            f'<text x="{x + bar / 2}" y="{top + plot_h + 14}" text-anchor="middle">{layer}</text>',
        ]
    parts += [
        f'<text x="{left + gap}" y="{height - 6}">layer</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ public


def model_card(head_map: dict, folder: Path) -> str:
    """The README.md text for the pruned ``folder`` whose head map is ``head_map``."""
    kept = _check_head_map(head_map)
    n_heads, folder = head_map["n_heads"], Path(folder)
    fields, config = _fields(head_map), _config(folder)
    lines = [
        *_front_matter(fields, config),
        *_overview(fields, config, kept, n_heads),
        *_heads_section(kept, n_heads),
        *_selection_section(fields),
        *_results_section(fields),
        *_size_section(fields, folder),
        *_latency_section(fields),
        *_reproduce_section(fields),
        *_loading_section(),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_model_card(folder: Path, head_map: dict) -> Path:
    """Write ``README.md`` and ``heads_kept.svg`` into ``folder`` (atomically; rerunning with
    the same inputs rewrites the same files) from its ``head_map`` (``card_head_map``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CAHPError(f"{folder} is not a folder; pass a pruned model folder")
    text = model_card(head_map, folder)
    write_text_atomic(
        folder / FIGURE_FILE, heads_figure(_check_head_map(head_map), head_map["n_heads"])
    )
    write_text_atomic(folder / CARD_FILE, text)
    return folder / CARD_FILE
