"""A tiny causal LM trains on each chat format end to end (issue 15 item 2), packed or not."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import parse_recipe
from tunesmith.predict import predict_texts
from tunesmith.train.loop import train

WORDS = "good bad happy sad love hate yes no".split()


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def records(fmt: str) -> list[dict]:
    out = []
    for a, b in zip(WORDS, WORDS[1:] + WORDS[:1], strict=True):
        chat = [
            turn("user", f"say {a}"),
            turn("assistant", f"{a} {a} yes"),
            turn("user", f"and {b} ?"),
            turn("assistant", f"{b} no"),
        ]
        if fmt == "messages":
            out.append({"messages": chat})
        elif fmt == "sharegpt":
            names = {"user": "human", "assistant": "gpt"}
            out.append(
                {"conversations": [{"from": names[t["role"]], "value": t["content"]} for t in chat]}
            )
        elif fmt == "prompt_completion":
            out.append({"prompt": chat[:3], "completion": chat[3:]})
        else:  # prompt/completion text
            out.append({"prompt": f"say {a}", "completion": f"{a} {a} yes"})
    return out * 3


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "prompt_completion", "pc_text"])
def test_chat_formats_train_and_predict(tiny_models, tmp_path, fmt):
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records(fmt)) + "\n")
    recipe = parse_recipe(
        {
            "model": str(tiny_models["llama", "causal_lm"]),
            "task": "causal_lm",
            "output_dir": str(tmp_path / "run"),
            "data": {
                "root": str(tmp_path),
                "train": "chat.jsonl",
                "split": {"dev": 0.25},
                "max_length": 48,
                "packing": fmt == "messages",
            },
            "train": {"batch_size": 4, "max_steps": 2, "progress": False, "tensorboard": False},
        }
    )
    summary = train(recipe)
    assert summary["dev"]["loss"] > 0
    if fmt == "messages":
        assert summary["train_examples"] < 18  # 18 conversations packed into fewer rows
    (pred,) = predict_texts(tmp_path / "run", ["say good"], max_new_tokens=3)
    assert isinstance(pred["generated"], str)
