import torch
from torch import nn

from tunesmith.fingerprint import file_digest, weights_digest


def test_file_digest_depends_on_content_not_place(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\ty\n")
    b.write_text("x\ty\n")
    assert file_digest(a) == file_digest(b)
    b.write_text("x\tz\n")
    assert file_digest(a) != file_digest(b)


def test_file_digest_of_folder_sees_names_and_bytes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("1")
    before = file_digest(tmp_path / "d")
    (tmp_path / "d" / "f").rename(tmp_path / "d" / "g")
    assert file_digest(tmp_path / "d") != before


def test_weights_digest_sees_values_and_skips_names():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    d = weights_digest(m)
    assert d == weights_digest(dict(reversed(list(m.state_dict().items()))))
    with torch.no_grad():
        m[1].weight.add_(1e-3)
    assert weights_digest(m) != d
    assert weights_digest(m, skip=["1."]) == weights_digest(
        {k: v for k, v in m.state_dict().items() if not k.startswith("1.")}
    )
    half = {k: v.to(torch.bfloat16) for k, v in m.state_dict().items()}
    assert weights_digest(half) != weights_digest(m)
