"""Data: read files into records, split them, encode them per task, and batch them.

records (``readers``) -> splits (``splits``) -> label ids (``labels``) -> token ids (``encode``; causal LM: ``lmencode``)
-> padded tensors (``collate``). The file formats (``formats``, one module each) register
themselves in :data:`tunesmith.registry.FORMATS` when this package is imported.
"""

from tunesmith.data import formats  # noqa: F401  (registers the built-in data formats)
from tunesmith.data.collate import Collator, LengthGroupedSampler
from tunesmith.data.encode import (
    IGNORE_INDEX,
    encode_classification,
    encode_seq2seq,
    encode_token_classification,
)
from tunesmith.data.labels import LabelVocab
from tunesmith.data.lmencode import TEMPLATES, build_prompt, encode_causal_lm, encode_prompt
from tunesmith.data.readers import FORMATS, ReadOptions, read_records, resolve_path
from tunesmith.data.splits import stratified_split

__all__ = [
    "FORMATS",
    "IGNORE_INDEX",
    "TEMPLATES",
    "Collator",
    "LabelVocab",
    "LengthGroupedSampler",
    "ReadOptions",
    "build_prompt",
    "encode_causal_lm",
    "encode_classification",
    "encode_prompt",
    "encode_seq2seq",
    "encode_token_classification",
    "read_records",
    "resolve_path",
    "stratified_split",
]
