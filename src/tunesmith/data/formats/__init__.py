"""The built-in data formats, one module per format family.

Each module registers its reader(s) in :data:`tunesmith.registry.FORMATS` with one call that
also declares the file extensions the format is inferred from::

    FORMATS.register("jsonl", DataFormat(read_jsonl, (".jsonl",)), "one JSON object per line")

A new format is a new module here plus its import below; the recipe validation
(``data.<split>.format``), extension inference, ``read_records`` and ``tunesmith list`` pick it up.
Importing :mod:`tunesmith.data` imports this package, so the formats are always registered.
"""

from tunesmith.data.formats import alpaca_chat, arrow, conll, delimited, folder, jsonl, label_text

__all__ = ["alpaca_chat", "arrow", "conll", "delimited", "folder", "jsonl", "label_text"]
