import torch

from tunesmith.data.collate import Collator
from tunesmith.data.lmencode import encode_causal_lm
from tunesmith.distill.seqkd import generate_completions, generate_targets, prompts_from_batch

from .conftest import lm_examples


def test_prompts_from_batch(causal_tok):
    examples = lm_examples(causal_tok, 3)
    batch = Collator(pad_token_id=0)(examples)
    assert prompts_from_batch(batch) == [ex["input_ids"][:2] for ex in examples]


def test_generate_completions_masks_prompt_and_after_eos(llama_teacher):
    prompts = [[5, 10, 11, 12], [5, 13]]
    greedy = generate_completions(
        llama_teacher, prompts, max_new_tokens=5, pad_token_id=0, eos_token_id=None, do_sample=False
    )
    P = 4
    assert greedy["input_ids"].shape == (2, P + 5)
    assert (greedy["labels"][:, :P] == -100).all() and (greedy["labels"][:, P:] != -100).all()
    assert greedy["attention_mask"][1].tolist() == [0, 0, 1, 1] + [1] * 5  # left padded
    assert greedy["position_ids"][1, 2:].tolist() == list(range(7))
    # make row 0's second generated token the EOS: the rest of row 0 is masked out
    eos = int(greedy["input_ids"][0, P + 1])
    out = generate_completions(
        llama_teacher, prompts, max_new_tokens=5, pad_token_id=0, eos_token_id=eos, do_sample=False
    )
    first_eos = int((out["input_ids"][0, P:] == eos).nonzero()[0])
    assert (out["labels"][0, P : P + first_eos + 1] != -100).all()
    assert (out["labels"][0, P + first_eos + 1 :] == -100).all()
    assert out["attention_mask"][0, P + first_eos + 1 :].sum() == 0


def test_generate_targets_gives_trainable_records(llama_teacher, causal_tok):
    records = [{"instruction": "hi", "output": "hello"}, {"instruction": "what is the cat ?"}]
    targets = generate_targets(llama_teacher, causal_tok, records, max_new_tokens=4, batch_size=2)
    assert [r["instruction"] for r in targets] == ["hi", "what is the cat ?"]
    assert all(isinstance(r["output"], str) for r in targets)
    assert records[0]["output"] == "hello"  # inputs are not modified
    encoded = encode_causal_lm(targets, causal_tok, template="chat")
    assert len(encoded) == 2 and all(-100 in ex["labels"] for ex in encoded)
    assert torch.is_tensor(Collator(pad_token_id=0)(encoded)["labels"])
