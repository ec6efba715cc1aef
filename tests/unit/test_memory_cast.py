"""The input cast of a mixed-dtype model (bf16 frozen weights, fp32 trained ones): floating inputs
to the module's weight dtype, except a plain linear's under autocast (autocast casts both)."""

import torch
from torch import nn

from tunesmith.memory import align_input_dtypes, cast_inputs


def test_inputs_follow_the_weight_dtype():
    linear, norm = nn.Linear(4, 4), nn.LayerNorm(4)
    x = torch.randn(2, 4, dtype=torch.bfloat16)
    (out,), _ = cast_inputs(linear, (x,), {})
    assert out.dtype == torch.float32
    (out,), _ = cast_inputs(norm, (x,), {})
    assert out.dtype == torch.float32


def test_a_linear_under_autocast_keeps_its_autocast_dtype_input():
    linear, norm = nn.Linear(4, 4), nn.LayerNorm(4)
    x = torch.randn(2, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (out,), _ = cast_inputs(linear, (x,), {})
        assert out is x  # no bf16 -> fp32 -> bf16 round trip
        (out,), _ = cast_inputs(norm, (x,), {})
        assert out.dtype == torch.float32  # not a linear: cast as before
        (out,), _ = cast_inputs(linear, (x.float(),), {})
        assert out.dtype == torch.float32


def test_same_values_with_and_without_the_round_trip():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    model[0].to(torch.bfloat16)
    align_input_dtypes(model)
    x = torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model[1](model[0](x.to(torch.bfloat16)).float())
    torch.testing.assert_close(ours.float(), ref.float())
