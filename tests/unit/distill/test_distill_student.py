import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tunesmith.distill.student import layer_map, select_layers, student_from_teacher
from tunesmith.errors import ModelError

from .conftest import build

CASES = [
    ("bert", AutoModelForSequenceClassification, "bert.encoder.layer", {"num_labels": 3}),
    ("llama", AutoModelForCausalLM, "model.layers", {}),
    ("llama", AutoModelForSequenceClassification, "model.layers", {"num_labels": 2}),
    ("gpt2", AutoModelForCausalLM, "transformer.h", {}),
]


@pytest.mark.parametrize("arch,auto,stack,kw", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_all_layers_gives_the_teacher(arch, auto, stack, kw):
    teacher = build(arch, auto, num_hidden_layers=4, **kw)
    student = student_from_teacher(teacher, [0, 1, 2, 3]).eval()
    ids = torch.randint(7, 200, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    with torch.no_grad():
        t = teacher(input_ids=ids, attention_mask=mask).logits
        s = student(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(s, t)


@pytest.mark.parametrize("arch,auto,stack,kw", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_every_other_copies_the_chosen_layers(arch, auto, stack, kw):
    teacher = build(arch, auto, num_hidden_layers=4, **kw)
    student = student_from_teacher(teacher, "every_other")
    assert student.config.num_hidden_layers == 2 and len(student.get_submodule(stack)) == 2
    assert student.training and all(p.requires_grad for p in student.parameters())
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        for new, old in ((0, 1), (1, 3)):  # every_other on 4 layers keeps [1, 3]
            key_t = key.replace(f"{stack}.{new}.", f"{stack}.{old}.")
            if key.startswith(f"{stack}.{new}."):
                break
        else:
            key_t = key  # embeddings, final norm, pooler, head: same name
        assert torch.equal(value, t_state[key_t]), key
    if getattr(teacher.config, "tie_word_embeddings", False) and hasattr(student, "lm_head"):
        assert student.lm_head.weight is student.get_input_embeddings().weight
    assert layer_map(student) == {0: 0, 1: 2, 2: 4}


def test_select_layers():
    assert select_layers(6, "every_other") == [1, 3, 5]
    assert select_layers(5, "every_other") == [0, 2, 4]
    assert select_layers(12, [0, 2, 4, 7, 9, -1]) == [0, 2, 4, 7, 9, 11]
    for bad in ([6], [], [2, 1], "every_third"):
        with pytest.raises(ModelError):
            select_layers(6, bad)


def test_layer_map_uniform_for_other_students():
    student = build("bert", AutoModelForSequenceClassification, num_hidden_layers=3)
    assert layer_map(student, teacher_layers=6) == {0: 0, 1: 2, 2: 4, 3: 6}
    with pytest.raises(ModelError, match="layer count"):
        layer_map(student)
