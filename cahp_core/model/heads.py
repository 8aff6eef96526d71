"""The head-access layer: the one place that knows where attention heads live.

Every other module asks this one for a model's attention blocks instead of walking
architecture-specific attribute paths itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cahp_core.errors import UnsupportedArchitectureError

# model_type -> how its encoder stores self-attention (all share BERT's layout:
# encoder.layer[i].attention.{self.query,self.key,self.value,output.dense}).
SUPPORTED_MODEL_TYPES: tuple[str, ...] = (
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "electra",
)


@dataclass(frozen=True)
class AttentionBlock:
    """One layer's self-attention: projections and the module that mixes heads."""

    layer: int
    attention: nn.Module  # the layer's attention: .self (the heads), .output.dense (their mixer)
    self_attention: nn.Module  # holds query/key/value Linear layers
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear  # mixes the concatenated head outputs: in_features = heads * head_dim
    head_dim: int

    @property
    def n_heads(self) -> int:
        return self.query.out_features // self.head_dim


@dataclass(frozen=True)
class HeadLayout:
    """Layer and head counts of a model (heads may differ per layer after pruning)."""

    heads_per_layer: tuple[int, ...]
    head_dim: int

    @property
    def n_layers(self) -> int:
        return len(self.heads_per_layer)

    @property
    def max_heads(self) -> int:
        return max(self.heads_per_layer, default=0)

    @property
    def total_heads(self) -> int:
        return sum(self.heads_per_layer)


def check_supported(config) -> None:
    """Raise a clear error if ``config`` is not an encoder CAHP can prune."""
    model_type = getattr(config, "model_type", "unknown")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (BERT-family encoders)"
        )
    hidden, heads = config.hidden_size, config.num_attention_heads
    if hidden % heads != 0:
        raise UnsupportedArchitectureError(
            f"hidden size {hidden} is not divisible by the number of attention heads {heads}; "
            "fix num_attention_heads in the model's config.json"
        )


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {type(model).__name__}: no encoder.layer list found; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return layers


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """Every layer's self-attention block, in layer order."""
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    blocks = []
    for index, layer in enumerate(_encoder_layers(model)):
        attention = layer.attention
        self_attention = attention.self
        blocks.append(
            AttentionBlock(
                layer=index,
                attention=attention,
                self_attention=self_attention,
                query=self_attention.query,
                key=self_attention.key,
                value=self_attention.value,
                output=attention.output.dense,
                head_dim=head_dim,
            )
        )
    return blocks


def head_layout(model: nn.Module) -> HeadLayout:
    """Heads per layer as the model is now (pruned layers included)."""
    blocks = attention_blocks(model)
    head_dim = blocks[0].head_dim if blocks else 0
    return HeadLayout(tuple(block.n_heads for block in blocks), head_dim)
