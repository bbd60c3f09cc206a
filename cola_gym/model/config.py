"""Configuration of the CoLA heads that sit on a frozen decoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

OutputForm = Literal["residual", "paper"]
Scale = Literal["compact", "paper"]

_OUTPUT_FORMS = ("residual", "paper")
_SCALES = ("compact", "paper")


@dataclass(frozen=True)
class CoLAConfig:
    """Shapes of the CoLA parts (Jia et al., ICML 2025) built around a decoder.

    Fields left as ``None`` are derived from the decoder by :meth:`resolve`:
    with ``scale="compact"`` (default) the inverse dynamics model and the policy get
    ``max(1, round(L / 15))`` blocks each (2 for a 30-layer decoder) and MLPs of half the
    decoder's intermediate width; ``scale="paper"`` reproduces the release's shapes
    (IDM 4 blocks, policy 8 blocks, full intermediate width).

    Attributes:
        num_actions: K, the size of the latent-action codebook.
        idm_num_layers: decoder blocks of the inverse dynamics model.
        policy_num_layers: decoder blocks of the latent policy.
        merge_num_layers: residual SwiGLU merge MLPs of the world model.
        head_hidden_size: width of the IDM and policy blocks; the decoder's hidden size
            by default (a different width adds an input projection).
        head_intermediate_size: SwiGLU width inside the IDM and policy blocks.
        head_num_attention_heads: attention heads of the IDM and policy blocks.
        head_num_key_value_heads: key/value heads of the IDM and policy blocks.
        merge_intermediate_size: SwiGLU width of the world model's merge MLPs.
        output_form: ``"residual"`` computes ``lm_head(s)`` from the merged state ``s``,
            so an untrained world model reproduces the decoder exactly; ``"paper"``
            computes the release's ``lm_head(final_norm(s) - h)``.
        scale: which rule fills the fields left as ``None``.
        init_seed: seed of the heads' random initialisation.
        q_network_num_layers: blocks of the Q-network that tree search uses (a head over
            ``h`` like the policy, K Q-values); 0 means the model has none.
    """

    num_actions: int = 64
    idm_num_layers: int | None = None
    policy_num_layers: int | None = None
    merge_num_layers: int = 2
    head_hidden_size: int | None = None
    head_intermediate_size: int | None = None
    head_num_attention_heads: int | None = None
    head_num_key_value_heads: int | None = None
    merge_intermediate_size: int | None = None
    output_form: OutputForm = "residual"
    scale: Scale = "compact"
    init_seed: int = 0
    q_network_num_layers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_actions, int) or self.num_actions < 2:
            raise ValueError(f"num_actions must be an int >= 2 (the paper uses 64), got {self.num_actions!r}")
        if self.q_network_num_layers < 0:
            raise ValueError(f"q_network_num_layers must be >= 0 (0: no Q-network), got {self.q_network_num_layers}")
        if self.merge_num_layers < 0:
            raise ValueError(f"merge_num_layers must be >= 0, got {self.merge_num_layers}")
        for name in (
            "idm_num_layers",
            "policy_num_layers",
            "head_hidden_size",
            "head_intermediate_size",
            "head_num_attention_heads",
            "head_num_key_value_heads",
            "merge_intermediate_size",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None (derived from the decoder), got {value!r}")
        if self.output_form not in _OUTPUT_FORMS:
            raise ValueError(f"output_form must be one of {_OUTPUT_FORMS}, got {self.output_form!r}")
        if self.scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")
        heads, kv_heads = self.head_num_attention_heads, self.head_num_key_value_heads
        if heads is not None and self.head_hidden_size is not None and self.head_hidden_size % heads:
            raise ValueError(
                f"head_hidden_size ({self.head_hidden_size}) must be divisible by "
                f"head_num_attention_heads ({heads}); change one of them"
            )
        if heads is not None and kv_heads is not None and heads % kv_heads:
            raise ValueError(
                f"head_num_attention_heads ({heads}) must be a multiple of head_num_key_value_heads ({kv_heads})"
            )

    @property
    def is_resolved(self) -> bool:
        """Whether every shape is concrete (no field left for the decoder to fill)."""
        return all(getattr(self, f.name) is not None for f in dataclasses.fields(self))

    def resolve(self, decoder_config: Any) -> CoLAConfig:
        """Fills the fields left as ``None`` from a Hugging Face decoder config.

        Args:
            decoder_config: the decoder's ``PretrainedConfig`` (needs ``hidden_size``,
                ``intermediate_size``, ``num_hidden_layers``, ``num_attention_heads``).

        Returns:
            A config with every field set.
        """
        d = decoder_config.hidden_size
        layers = decoder_config.num_hidden_layers
        intermediate = decoder_config.intermediate_size
        if self.scale == "paper":
            idm_layers, policy_layers, head_intermediate = 4, 8, intermediate
        else:
            idm_layers = policy_layers = max(1, round(layers / 15))
            head_intermediate = max(1, intermediate // 2)
        width = self.head_hidden_size or d
        if self.head_num_attention_heads is not None:
            heads = self.head_num_attention_heads
        elif width == d:
            heads = decoder_config.num_attention_heads
        else:
            heads = max(1, width // getattr(decoder_config, "head_dim", d // decoder_config.num_attention_heads))
        if self.head_num_key_value_heads is not None:
            kv_heads = self.head_num_key_value_heads
        elif width == d and heads == decoder_config.num_attention_heads:
            kv_heads = getattr(decoder_config, "num_key_value_heads", None) or heads
        else:
            kv_heads = heads
        head_intermediate = self.head_intermediate_size or head_intermediate
        return dataclasses.replace(
            self,
            idm_num_layers=self.idm_num_layers or idm_layers,
            policy_num_layers=self.policy_num_layers or policy_layers,
            head_hidden_size=width,
            head_intermediate_size=head_intermediate,
            head_num_attention_heads=heads,
            head_num_key_value_heads=kv_heads,
            merge_intermediate_size=self.merge_intermediate_size or head_intermediate,
        )

    def require(self, name: str) -> int:
        """The value of a shape field that :meth:`resolve` has filled."""
        value = getattr(self, name)
        if not isinstance(value, int):
            raise ValueError(f"{name} is not set yet; call config.resolve(decoder_config) first")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoLAConfig:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CoLAConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)
