"""Every shipped YAML of recipes/configs/ loads through its recipe's own config check (keys, choices, model fields),
and the data options it names are options its builder accepts: a config the README points to never fails on a typo."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"
LM = sorted(CONFIGS.glob("lm_*.yaml"))
DD = sorted(CONFIGS.glob("dediffusion_*.yaml"))


def recipe(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", LM, ids=[p.stem for p in LM])
def test_train_lm_configs_load_and_name_real_builder_options(path):
    from pixeltok.data.text_images import TextImagesConfig

    cfg = recipe("train_lm").load_config(str(path), [])
    if cfg["data"]["source"] == "text_images":
        fields = set(TextImagesConfig.__dataclass_fields__)
        assert set(cfg["data"]["options"]) <= fields, set(cfg["data"]["options"]) - fields


@pytest.mark.parametrize("path", DD, ids=[p.stem for p in DD])
def test_train_dediffusion_configs_load(path):
    from pixeltok.models.dediffusion import DeDiffusionConfig

    cfg = recipe("train_dediffusion").load_config(str(path), [])
    DeDiffusionConfig(**cfg["encoder"]["config"])  # every field accepted and valid


def test_the_reader_curriculum_stages_share_model_and_processor():
    lm = recipe("train_lm")
    stage1, stage2 = (lm.load_config(str(CONFIGS / n), []) for n in ("lm_reader_stage1.yaml", "lm_reader.yaml"))
    assert stage1["model"] == stage2["model"] and stage1["processor"] == stage2["processor"]
    assert stage1["data"]["options"]["random_max_length"] < 8 and stage1["data"]["options"]["random_fraction"] == 1
