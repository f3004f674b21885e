"""De-Diffusion: the encoder model, the drawing sequence format, and recipes/train_lm.py (task draw) +
recipes/train_dediffusion.py at toy size: 1 process with resume and Hub push, 2 real CPU ranks, one-line errors."""

import json
import math
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from launching import accelerate_launch

ROOT = Path(__file__).resolve().parents[1]
DRAW_TINY = ROOT / "recipes" / "configs" / "lm_draw_tiny.yaml"
DD_TINY = ROOT / "recipes" / "configs" / "dediffusion_tiny.yaml"


def run(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "recipes" / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("draw") / "decoder"
    r = run("train_lm.py", "--config", str(DRAW_TINY), "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Traceback" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def decoder(decoder_dir):
    import pixeltok  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoProcessor

    return AutoModelForCausalLM.from_pretrained(decoder_dir).eval(), AutoProcessor.from_pretrained(decoder_dir)


@pytest.fixture(scope="module")
def scenes():
    from pixeltok.data import load_scenes

    return load_scenes(n_train=16, n_val=8, n_test=8, size=16, max_shapes=2)


def tiny_encoder(processor, k=3):
    from pixeltok.models.dediffusion import DeDiffusionConfig, DeDiffusionEncoder, text_token_ids

    cfg = DeDiffusionConfig(image_height=16, image_width=16, hidden_size=16, intermediate_size=32,
                            num_attention_heads=2, num_trunk_layers=1, num_pooler_layers=1, num_queries=k,
                            text_token_ids=text_token_ids(processor), decoder_vocab_size=len(processor.tokenizer))
    torch.manual_seed(0)
    return DeDiffusionEncoder(cfg)


def test_the_draw_run_leaves_a_decoder_with_bits_for_every_text_kind(decoder_dir):
    results = json.loads((decoder_dir / "eval_results.json").read_text())
    test = results["test"]
    assert results["task"] == "draw" and set(test) >= {"caption", "short_caption", "none", "tokens_per_image"}
    for kind in ("caption", "short_caption", "none"):
        assert 0 < test[kind]["bits_per_image_token"] < math.log2(len(json.loads(
            (decoder_dir / "tokenizer.json").read_text())["model"]["vocab"]) + 2000)
        assert 0 <= test[kind]["pixel_accuracy"] <= 1
    assert "bits per image token" in (decoder_dir / "README.md").read_text()
    assert (decoder_dir / "bpe_tokenizer" / "tokenizer.json").is_file()


def test_text_tokens_exclude_pixel_and_special_tokens(decoder):
    from pixeltok.models.dediffusion import text_token_ids

    _, proc = decoder
    ids = set(text_token_ids(proc))
    assert ids and not ids & set(proc.pixel_token_ids.tolist())
    assert not ids & (set(proc.tokenizer.all_special_ids) | {proc.boi_token_id, proc.eoi_token_id})
    assert proc.tokenizer.convert_tokens_to_ids("a") in ids


def test_draw_batch_labels_cover_the_pixels_and_eoi_only(decoder, scenes):
    from pixeltok.drawing import draw_batch, image_span_ids

    _, proc = decoder
    images = scenes["test"]["image"][:2]
    b = draw_batch(proc, images, ["a red circle", ""])
    span = image_span_ids(proc, images[:1])[0]
    lab = b["labels"][0][b["labels"][0] != -100].numpy()
    assert np.array_equal(lab, span[1:]) and lab[-1] == proc.eoi_token_id


def test_image_bits_equal_the_recipe_loss_through_inputs_embeds(decoder, scenes):
    """The straight-through one-hot @ embeddings path gives the decoder exactly the argmax token ids' input."""
    from pixeltok.drawing import image_bits, image_span_ids
    from pixeltok.tokenization.pixel_codec import pad_rows

    model, proc = decoder
    enc = tiny_encoder(proc).eval()
    images = scenes["test"]["image"][:3]
    out = enc(enc.preprocess(images), sample=False)
    E = model.get_input_embeddings().weight
    spans = image_span_ids(proc, images)
    L = max(len(s) for s in spans)
    ids = torch.from_numpy(pad_rows(spans, proc.tokenizer.pad_token_id, L))
    with torch.no_grad():
        logits = model(inputs_embeds=torch.cat([enc.embed_tokens(out.tokens, E), E[ids]], 1)).logits
    K = out.tokens.shape[1]
    nll = [torch.nn.functional.cross_entropy(logits[i, K:K + len(s) - 1], torch.as_tensor(s[1:]), reduction="sum")
           for i, s in enumerate(spans)]
    bits = image_bits(model, proc, images, prefixes=[r.numpy() for r in out.token_ids])
    assert np.allclose(bits[:, 0], [float(n) / math.log(2) for n in nll], rtol=1e-4)
    assert list(bits[:, 1]) == [len(s) - 1 for s in spans]


def test_gradients_reach_the_encoder_and_not_the_frozen_decoder(decoder, scenes):
    model, proc = decoder
    model.requires_grad_(False)
    enc = tiny_encoder(proc).train()
    out = enc(enc.preprocess(scenes["train"]["image"][:4]), tau=1.0)
    assert out.tokens.shape == (4, 3, len(enc.config.text_token_ids))
    assert torch.allclose(out.tokens.sum(-1), torch.ones(4, 3)) and set(out.tokens.detach().unique().tolist()) <= {0, 1}
    E = model.get_input_embeddings().weight
    logits = model(inputs_embeds=enc.embed_tokens(out.tokens, E)).logits
    logits[..., 5].sum().backward()
    assert enc.head.weight.grad is not None and enc.head.weight.grad.abs().sum() > 0
    assert enc.patch_embed.weight.grad.abs().sum() > 0 and E.grad is None


def test_batch_collapse_is_log_t_for_one_text_and_falls_as_texts_spread():
    import math

    from pixeltok.models.dediffusion import batch_collapse

    same = torch.zeros(8, 3, 16)
    same[..., 5] = 50.0  # every image, every position: token 5
    spread = torch.zeros(8, 3, 16)
    spread[torch.arange(8), :, torch.arange(8)] = 50.0  # image i writes token i
    assert float(batch_collapse(same)) == pytest.approx(math.log(16), abs=1e-4)
    assert float(batch_collapse(spread)) == pytest.approx(math.log(16) - math.log(8), abs=1e-4)
    flat = torch.zeros(8, 3, 16)  # every image unsure: no information about which image it is
    assert float(batch_collapse(flat)) == pytest.approx(math.log(16), abs=1e-4)
    logits = torch.zeros(4, 2, 16, requires_grad=True)
    batch_collapse(logits + torch.randn(4, 2, 16)).backward()
    assert logits.grad.abs().sum() > 0  # a loss term: it has a gradient


def test_text_repetition_is_one_for_one_token_everywhere_and_zero_for_distinct_tokens():
    from pixeltok.models.dediffusion import text_repetition

    same = torch.zeros(2, 4, 16)
    same[..., 3] = 50.0
    distinct = torch.zeros(2, 4, 16)
    distinct[:, torch.arange(4), torch.arange(4)] = 50.0  # position k writes token k
    assert float(text_repetition(same)) == pytest.approx(1.0, abs=1e-4)
    assert float(text_repetition(distinct)) == pytest.approx(0.0, abs=1e-4)
    assert float(text_repetition(torch.zeros(2, 1, 16))) == 0.0  # one position repeats nothing


def test_temperature_schedule_and_config_errors():
    from pixeltok.models.dediffusion import DeDiffusionConfig

    c = DeDiffusionConfig(tau_start=2.0, tau_end=0.5, tau_decay_steps=100, text_token_ids=[1])
    assert c.gumbel_temperature(0) == 2.0 and abs(c.gumbel_temperature(100) - 0.5) < 1e-9
    assert c.gumbel_temperature(50) == pytest.approx(1.25) and c.gumbel_temperature(10**6) == pytest.approx(0.5)
    e = DeDiffusionConfig(tau_start=2.0, tau_end=0.5, tau_decay_steps=100, tau_schedule="exponential")
    assert e.gumbel_temperature(50) == pytest.approx(1.0)
    for bad, needle in [(dict(image_height=18), "multiples of patch_size"), (dict(num_queries=0), "num_queries"),
                        (dict(tau_end=3.0), "tau_end <= tau_start"), (dict(fit="crop"), "fit must be"),
                        (dict(query_init_std=0), "query_init_std")]:
        with pytest.raises(ValueError, match=needle):
            DeDiffusionConfig(**bad)


def test_describe_after_save_and_automodel_load(decoder, scenes, tmp_path):
    import pixeltok  # noqa: F401
    from transformers import AutoModel

    _, proc = decoder
    enc = tiny_encoder(proc, k=4)
    with pytest.raises(ValueError, match="needs the decoder's tokenizer"):
        enc.describe(scenes["test"]["image"][:1])
    enc.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    back = AutoModel.from_pretrained(tmp_path)
    assert type(back).__name__ == "DeDiffusionEncoder"
    texts = back.describe(scenes["test"]["image"][:3])
    assert texts == enc.describe(scenes["test"]["image"][:3], tokenizer=proc.tokenizer) and all(texts)


@pytest.fixture(scope="module")
def encoder_run(decoder_dir, tmp_path_factory, hub_server):
    out = tmp_path_factory.mktemp("dd") / "encoder"
    repo_id = f"{hub_server.user}/tiny-dediffusion-{uuid.uuid4().hex[:8]}"
    args = ["--config", str(DD_TINY), "--output_dir", str(out), "--set", f"decoder.path={decoder_dir}"]
    first = run("train_dediffusion.py", *args, "--set", "training.max_steps=10")
    assert first.returncode == 0, first.stderr[-4000:]
    second = run("train_dediffusion.py", *args, "--resume_from_checkpoint", "latest", "--push_to_hub",
                 "--hub_model_id", repo_id, "--private")
    assert second.returncode == 0, second.stderr[-4000:]
    return out, first, second, repo_id


def test_train_dediffusion_resumes_and_pushes_a_loadable_encoder(encoder_run, scenes):
    import pixeltok  # noqa: F401
    from huggingface_hub import HfApi, ModelCard
    from transformers import AutoModel

    out, first, second, repo_id = encoder_run
    for r in (first, second):
        assert "Traceback" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 20 and [h["step"] for h in state["log_history"] if "train_bits" in h] == [5, 10, 15, 20]
    assert all(0 <= h["collapse"] <= 7 for h in state["log_history"] if "train_bits" in h)  # diversity_weight: 0.1
    results = json.loads((out / "eval_results.json").read_text())
    assert results["test"]["num_images"] == 16 and results["test"]["bits_per_image_token"] > 0
    assert results["encoder_config"]["num_queries"] == 5
    # text_tokens: seen -- only the decoder's text tokens that its training captions use
    from pixeltok.models.dediffusion import text_token_ids
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(out)
    every = text_token_ids(proc)
    assert 0 < results["num_text_tokens"] < len(every)
    used = set(AutoModel.from_pretrained(out).config.text_token_ids)
    captions = " ".join(load_source_captions())
    assert all(proc.tokenizer.decode([i]) in captions for i in used)
    files = set(HfApi().list_repo_files(repo_id))
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "eval_results.json", "README.md"} <= files
    assert ModelCard.load(repo_id).data.pipeline_tag == "image-to-text"
    hub, local = AutoModel.from_pretrained(repo_id), AutoModel.from_pretrained(out)
    images = scenes["test"]["image"][:4]
    assert hub.describe(images) == local.describe(images)


def load_source_captions():
    """The tiny decoder's training captions (lm_draw_tiny.yaml's data)."""
    from pixeltok.data import load_scenes

    train = load_scenes(n_train=256, n_val=32, n_test=32, size=16, max_shapes=2)["train"]
    return list(train["caption"]) + list(train["short_caption"])


def test_train_dediffusion_on_two_cpu_ranks(decoder_dir, tmp_path):
    out = tmp_path / "dd2"
    log = accelerate_launch("train_dediffusion.py", "--config", str(DD_TINY), "--output_dir", str(out),
                            "--set", f"decoder.path={decoder_dir}", "--set", "training.max_steps=6", timeout=300)
    assert re.findall(r"\[pixeltok\] world_size=(\d+) ranks=(\[.*?\]) ", log) == [("2", "[0, 1]")], log[-3000:]
    assert "replicas_agree=True" in log and "Traceback" not in log
    results = json.loads((out / "eval_results.json").read_text())
    assert results["training"]["world_size"] == 2 and results["test"]["num_images"] == 16


@pytest.mark.parametrize("setting,needle", [
    ("encoder.config.num_querys=3", "encoder.config.num_querys is not a DeDiffusionConfig field"),
    ("encoder.config.num_attention_heads=3", "multiple of num_attention_heads"),
    ("decoder.path=/nonexistent/decoder", "not found"),
    ("data.options={size: 3}", "size must be"),
])
def test_train_dediffusion_config_errors_are_one_line(setting, needle, decoder_dir, tmp_path):
    args = ["--config", str(DD_TINY), "--output_dir", str(tmp_path / "x")]
    if not setting.startswith("decoder."):
        args += ["--set", f"decoder.path={decoder_dir}"]
    r = run("train_dediffusion.py", *args, "--set", setting)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_eval_dediffusion_regenerates_the_table_in_one_command(tmp_path):
    r = run("eval_dediffusion.py", "--output_dir", str(tmp_path), "--tasks", "scenes", "--decoder_config",
            str(DRAW_TINY), "--encoder_config", str(DD_TINY), "--ks", "2,3", "--draw_samples", "4", timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Traceback" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())["scenes"]
    assert set(res["rows"]) == {"De-Diffusion K=2", "De-Diffusion K=3", "complete caption", "short caption",
                                "no text"}
    for row in res["rows"].values():
        assert row["bits_A"] > 0 and row["bits_B"] > 0 and 0 <= row["pixel_accuracy_A"] <= 1
    assert res["rows"]["De-Diffusion K=3"]["text_tokens"] == 3
    b = json.loads((tmp_path / "scenes" / "decoder_b" / "eval_results.json").read_text())
    assert b["model_type"] == "gpt_neox" and b["training"]["hyperparameters"]["seed"] == 1
    table = (tmp_path / "table.md").read_text()
    assert "| De-Diffusion K=2 | 2.0 |" in table and "x short caption (B)" in table
    from PIL import Image

    assert Image.open(tmp_path / "scenes" / "grid.png").size[0] > 100


def test_load_source_is_the_one_data_path_of_the_recipes():
    from pixeltok.data import load_source

    sprites = load_source("sprites", n_train=0, n_val=0, n_test=0, options={"long_side": 16})
    assert set(sprites) == {"train", "validation", "test"} and "caption" in sprites["train"].column_names
    scenes = load_source("scenes", n_train=4, n_val=2, n_test=2, options={"size": 16})
    assert scenes["train"].num_rows == 4 and "short_caption" in scenes["train"].column_names
    words = load_source("text_images", n_train=4, n_val=2, n_test=2, words="pydoc", tier="clean")
    assert set(words["test"]["tier"]) == {"clean"}
    with pytest.raises(ValueError, match="unknown data source"):
        load_source("photos", n_train=1, n_val=1, n_test=1)
