"""Use a finished run: evaluate its best model again, or predict on new text."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator

from tunesmith.adapters import (
    list_adapters,
    load_model_or_adapter,
    load_multitask,
    merge_and_unload,
)
from tunesmith.config import load_recipe
from tunesmith.data.collate import Collator
from tunesmith.data.labels import LabelVocab
from tunesmith.data.pipeline import build_datasets, build_task_datasets, text_format
from tunesmith.errors import ConfigError, ModelError, TunesmithError, reading
from tunesmith.models import is_adapter_folder, load_tokenizer
from tunesmith.tasks import task_kind
from tunesmith.train.evaluation import evaluate
from tunesmith.train.modes.mixture import evaluate_heads
from tunesmith.train.modes.text_to_text import evaluate_text_tasks
from tunesmith.train.scoring import score_label_set


def load_run(run_dir: str | Path):
    """(recipe, model, tokenizer, labels) of a run's ``best/`` model, in eval mode."""
    run_dir = Path(run_dir)
    best = run_dir / "best"
    if not (run_dir / "config.yaml").is_file() or not best.is_dir():
        raise ConfigError(
            "",
            f"{run_dir} is not a finished tunesmith run (no config.yaml or best/)",
            "pass the output_dir of a `tunesmith train` run",
        )
    recipe = load_recipe(run_dir / "config.yaml", check_paths=False)
    labels = None
    if (run_dir / "labels.json").is_file():
        with reading(run_dir / "labels.json", ModelError):
            labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(str(best))
    if (best / "multitask.json").is_file():  # one head (and maybe adapter) per task
        model = load_multitask(best)
    else:  # a plain HF folder, or an adapter run's best/ (base + adapter rebuilt)
        kwargs = {}
        if is_adapter_folder(best) and isinstance(labels, list):  # the head the adapter saved
            kwargs = dict(id2label=LabelVocab(labels, recipe.data.label_names).named_id2label)
        model = load_model_or_adapter(str(best), recipe.task, **kwargs)
    model.eval()
    return recipe, model, tokenizer, labels


def merge_run(run_dir: str | Path, output: str | Path) -> Path:
    """Fold a LoRA/IA3 run's adapter into its base and write a plain HF model folder."""
    _, model, tokenizer, _ = load_run(run_dir)
    if not list_adapters(model):
        raise ConfigError(
            "", f"{run_dir} was not trained with an adapter; best/ is already a plain model folder"
        )
    model = merge_and_unload(model)
    output = Path(output)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output


def evaluate_run(run_dir: str | Path, splits=("dev", "test")) -> dict[str, dict[str, float]]:
    recipe, model, tokenizer, labels = load_run(run_dir)
    acc = Accelerator()
    model.to(acc.device)  # evaluate() moves each batch to acc.device (a GPU where there is one)
    if recipe.text_to_text:
        return evaluate_text_to_text_run(recipe, model, tokenizer, splits)
    if recipe.task == "multi_head":
        return evaluate_multitask_run(recipe, model, tokenizer, acc, splits)
    data = build_datasets(recipe, tokenizer, saved_labels=labels)
    out = {}
    for split in splits:
        examples = getattr(data, split)
        if examples:
            out[split] = evaluate(
                model,
                examples,
                Collator(tokenizer.pad_token_id),
                recipe.task,
                data.vocab,
                acc,
                recipe.train.eval_batch_size,
            )
    return out


@torch.no_grad()
def evaluate_multitask_run(recipe, model, tokenizer, acc, splits) -> dict[str, dict[str, float]]:
    data = build_task_datasets(recipe, tokenizer)
    collator, batch_size = Collator(tokenizer.pad_token_id), recipe.train.eval_batch_size
    out = {}
    for split in splits:
        if any(getattr(ds, split) for ds in data.tasks.values()):
            out[split] = evaluate_heads(model, recipe, data, collator, acc, batch_size, split)
    return out


def evaluate_text_to_text_run(recipe, model, tokenizer, splits) -> dict[str, dict[str, float]]:
    data = build_task_datasets(recipe, tokenizer)
    out = {}
    for split in splits:
        metrics = evaluate_text_tasks(model, tokenizer, recipe, data, split)
        if len(metrics) > 1:  # more than the (NaN) mean of no task
            out[split] = metrics
    return out


@torch.no_grad()
def classify_text_to_text(recipe, model, tokenizer, labels, texts: list[str], task: str | None):
    """A text-to-text run as a classifier of ``task``: each text written in the task's format,
    its label words scored; [{"label", "word", "score"}] (score: softmax over the label words)."""
    names = [t.name for t in recipe.tasks]
    if task not in names:
        raise ConfigError("task", f"this text-to-text run needs --task, one of {names}")
    i = names.index(task)
    view, cfg = recipe.task_recipe(i), recipe.tasks[i]
    fmt = text_format(view, cfg.text, task, labels[task])
    if len(fmt.fields) != 1:
        raise ConfigError(
            "task", f"task {task!r} reads {len(fmt.fields)} fields; predict gives one"
        )
    key = fmt.fields[0][1]
    prompts = [fmt.source({key: text}) for text in texts]
    words = [fmt.target(label) for label in labels[task]]
    scores = score_label_set(
        model,
        tokenizer,
        prompts,
        words,
        template=view.data.template,
        system=view.data.system,
        max_length=view.data.max_length,
    )
    probs = scores.softmax(-1)
    return [
        {
            "label": labels[task][int(p.argmax())],
            "word": words[int(p.argmax())],
            "score": round(float(p.max()), 4),
        }
        for p in probs
    ]


def select_task(recipe, model, labels, task: str | None):
    """A multi-task run seen as the single-task run of ``task`` (recipe, model view, labels)."""
    names = [t.name for t in recipe.tasks]
    if task not in names:
        raise ConfigError("task", f"this multi-task run needs --task, one of {names}")
    return recipe.task_recipe(names.index(task)), model.task_view(task), labels[task]


@torch.no_grad()
def predict_texts(
    run_dir: str | Path,
    texts: list[str],
    max_new_tokens: int | None = None,
    task: str | None = None,
):
    """Classification: [{"label", "score"}]; token classification: [[(word, tag)]];
    causal LM / seq2seq: [{"generated"}] (greedy decoding). ``task`` picks a multi-task run's head.
    Labels show as their ``data.label_names`` (classification adds the ``raw_label`` then)."""
    recipe, model, tokenizer, labels = load_run(run_dir)
    if recipe.text_to_text:
        return classify_text_to_text(recipe, model, tokenizer, labels, texts, task)
    if recipe.task == "multi_head":
        recipe, model, labels = select_task(recipe, model, labels, task)
    kind = task_kind(recipe.task)
    if kind.generative:
        new = max_new_tokens or recipe.train.generate_max_new_tokens
        return [{"generated": generate_one(model, tokenizer, recipe, text, new)} for text in texts]
    names = recipe.data.label_names or {}
    if kind.per_token:
        shown = [names.get(tag, tag) for tag in labels]
        return [tag_words(model, tokenizer, text, shown, recipe.data.max_length) for text in texts]
    firsts, seconds = split_pairs(texts, recipe.data.text_key, recipe.data.text_pair_key)
    enc = tokenizer(
        firsts,
        seconds,
        padding=True,
        truncation=True,
        max_length=recipe.data.max_length,
        return_tensors="pt",
    )
    probs = model(**enc).logits.float().softmax(-1)
    return [
        named(labels[int(p.argmax())], names) | {"score": round(float(p.max()), 4)} for p in probs
    ]


def named(label: str, names: dict[str, str]) -> dict[str, str]:
    """``{"label": name}`` (and the ``raw_label``) for a named label, else ``{"label": label}``."""
    return {"label": names[label], "raw_label": label} if label in names else {"label": label}


def split_pairs(texts: list[str], key: str, pair_key: str | None):
    """Pair tasks (``data.text_pair_key`` set, e.g. RTE) take ``first<TAB>second`` inputs."""
    if not pair_key:
        return texts, None
    pairs = [t.split("\t", 1) for t in texts]
    for text, pair in zip(texts, pairs, strict=True):
        if len(pair) != 2:
            raise TunesmithError(
                f"this run classifies text pairs ({key} + {pair_key}): give each input as "
                f"'first<TAB>second'; got {text!r:.60}"
            )
    return [p[0] for p in pairs], [p[1] for p in pairs]


def prompt_inputs(recipe, tokenizer, text: str) -> dict[str, torch.Tensor]:
    """Model inputs (1, T) for ``text``, tokenised exactly as the training prompts were."""
    ids = task_kind(recipe.task).prompt_ids(recipe.data, tokenizer, text)
    input_ids = torch.tensor([list(ids)])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def generate_one(model, tokenizer, recipe, text: str, max_new_tokens: int) -> str:
    """Greedy generation for one input; returns only the new text."""
    enc = prompt_inputs(recipe, tokenizer, text)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    # a decoder-only model's output starts with the prompt; an encoder-decoder's does not
    kind = task_kind(recipe.task)
    gen = out[0] if kind.encoder_decoder else out[0, enc["input_ids"].shape[1] :]
    return tokenizer.decode(gen, skip_special_tokens=True).strip()


def tag_words(model, tokenizer, text: str, labels: list[str], max_length: int):
    words = text.split()
    enc = tokenizer(
        words, is_split_into_words=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    pred = model(**enc).logits[0].argmax(-1).tolist()
    tags, seen = ["O"] * len(words), set()
    for pos, w in enumerate(enc.word_ids()):
        if w is not None and w not in seen:
            seen.add(w)
            tags[w] = labels[pred[pos]]
    return list(zip(words, tags, strict=True))
