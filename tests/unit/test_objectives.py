import torch

from tunesmith.config import ObjectiveConfig
from tunesmith.objectives import build_terms, combine


def test_combine_adds_weighted_terms_and_l2sp_value():
    model = torch.nn.Linear(2, 2)
    terms = build_terms([ObjectiveConfig(name="l2_sp", weight=0.5)])
    terms[0].setup(model)
    with torch.no_grad():
        model.weight.add_(1.0)  # 4 entries moved by 1 -> penalty 4
    total, parts = combine(torch.tensor(1.0), terms, model, {}, None)
    assert parts["l2_sp"] == 4.0
    assert float(total.detach()) == 1.0 + 0.5 * 4.0 == parts["loss"]
