"""AdapterFusion through the loop: adapters from earlier runs fused for a new run."""

import json

from tunesmith.config import parse_recipe
from tunesmith.configschema import to_dict
from tunesmith.predict import evaluate_run, predict_texts
from tunesmith.train.loop import train

from .conftest import make_recipe


def with_adapter(recipe, adapter):
    data = {k: v for k, v in to_dict(recipe).items() if v is not None}
    return parse_recipe({**data, "adapter": adapter}, [])


def test_fusion_run_trains_reports_and_reloads(tiny_models, tiny_data, tmp_path):
    model = tiny_models["bert", "sequence_classification"]
    steps = {"train.max_steps": 2}
    sources = []
    for i, kind in enumerate(("houlsby", "lora")):
        run = tmp_path / f"src{i}"
        recipe = make_recipe(model, "sequence_classification", tiny_data, run, seed=i, **steps)
        train(with_adapter(recipe, {"type": kind}))
        sources.append(str(run))
    run = tmp_path / "fused"
    recipe = make_recipe(model, "sequence_classification", tiny_data, run, **steps)
    fusion = {"type": "fusion", "adapters": sources, "target": {"type": "pfeiffer"}}
    summary = train(with_adapter(recipe, fusion))
    attention = summary["fusion"]
    assert attention["adapters"] == ["src0", "src1", "target"]
    for weights in attention["layers"].values():
        assert abs(sum(weights) - 1) < 1e-5
    assert "AdapterFusion attention" in (run / "report.md").read_text()
    assert (run / "fusion.png").is_file()
    saved = json.loads((run / "best" / "tunesmith_adapter.json").read_text())
    assert [m["source"] for m in saved["config"]["members"]] == sources
    assert evaluate_run(run)["dev"] == summary["dev"]  # reloaded exactly
    assert predict_texts(run, ["good happy film"])[0]["label"] in {"0", "1"}
