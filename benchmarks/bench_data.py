"""The ``data:`` sections of the shared datasets the benchmarks train on (paths relative to
``$TUNESMITH_DATA``), defined once. A benchmark adds its own ``max_length`` / ``limit`` / format
keys on top: ``{**DATA["sst2"], "max_length": 64}``. Scripts import it with
``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))`` then ``from bench_data import DATA``."""

from __future__ import annotations

TREC = {"format": "label_text", "label_sep": ":", "encoding": "latin-1"}  # "DESC:manner How ..."
EMOTION = {"format": "label_text", "label_position": "last", "separator": ";", "header": True}

DATA: dict[str, dict] = {
    # the 7,600 labelled rows of AG News (4 topics); splits carved here, seeded and stratified
    "ag_news": {
        "train": {"path": "ag_news/test.csv", "format": "csv"},
        "text_key": "description",
        "split": {"dev": 0.1, "test": 0.15},
    },
    # SST-2 sentences: train 6,920 / dev 872 / labelled test 1,821
    "sst2": {
        split: {"path": f"sst2_sentences/{split}.txt", "format": "label_text"}
        for split in ("train", "dev", "test")
    },
    # TREC coarse: train 5,452 minus a seeded 10% dev / test 500
    "trec": {
        "train": {"path": "trec/train.txt", **TREC},
        "test": {"path": "trec/test.txt", **TREC},
        "split": {"dev": 0.1},
        # the label set given, not read off train: a --quick subsample may miss ABBR (96 of 5,452)
        "labels": ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
    },
    # SMS Spam Collection: "label<TAB>text" (ham / spam), 5,574 rows; splits carved here
    "sms_spam": {
        "train": {"path": "sms_spam/SMSSpamCollection", "format": "label_text", "separator": "\t"},
        "split": {"dev": 0.1, "test": 0.15},
    },
    # emotion: "text;label_name" with a header, label last; train / val / test
    "emotion": {
        split: {"path": f"emotion/{name}.txt", **EMOTION}
        for split, name in (("train", "train"), ("dev", "val"), ("test", "test"))
    },
}

# label -> word for the tasks written as text (text-to-text / causal-LM label-word scoring);
# emotion's labels are words already
LABEL_WORDS: dict[str, dict[str, str]] = {
    "sst2": {"0": "negative", "1": "positive"},
    "trec": {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
             "LOC": "location", "NUM": "number"},
}  # fmt: skip
