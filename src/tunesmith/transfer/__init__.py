"""Transfer-learning controls: which parameters train, when they start training, and at what LR.

Three practices from the fine-tuning literature, all driven by one per-architecture table
(:data:`LAYOUTS`, in ``layout``) that says where a model keeps its embeddings, its ordered
transformer blocks and its top-of-stack modules:

* freezing (embeddings, the first *n* blocks, name patterns, or everything but the task head —
  a linear probe): :func:`apply_freezing` (``freezing``);
* gradual unfreezing, top group first (ULMFiT, Howard & Ruder 2018, §3.3):
  :class:`GradualUnfreezer` (``depthwise``);
* discriminative / layer-wise LR decay (Howard & Ruder 2018; Sun et al. 2019 "How to fine-tune
  BERT"; ELECTRA, Clark et al. 2020): :func:`layerwise_lr_scales` (``depthwise``),
  consumed by :func:`tunesmith.optim.param_groups`.

Groups are numbered bottom to top: 0 = embeddings, 1..L = blocks, L+1 = everything above the
blocks (final norm, pooler, task head).

Tied parameters (e.g. a causal LM whose ``lm_head.weight`` *is* ``embed_tokens.weight``) are one
tensor, so they can only be frozen or trained together. We decide by identity, once per tensor: a
tied tensor belongs to the *lowest* group that uses it (the embeddings). Hence freezing the
embeddings also freezes a tied ``lm_head`` (with a warning), a tied LM has no separate head for a
linear probe, and gradual unfreezing trains the tied output projection only once it reaches the
embeddings. Untie (``tie_word_embeddings: false``) to treat the output projection as a head.
"""

from tunesmith.transfer.depthwise import GradualUnfreezer, layerwise_lr_scales
from tunesmith.transfer.freezing import apply_freezing
from tunesmith.transfer.layout import LAYOUTS, ArchLayout, LayerLayout, layer_index, layer_layout

__all__ = [
    "LAYOUTS",
    "ArchLayout",
    "GradualUnfreezer",
    "LayerLayout",
    "apply_freezing",
    "layer_index",
    "layer_layout",
    "layerwise_lr_scales",
]
