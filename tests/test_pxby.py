"""PxBy model family: config, Auto classes, save/load, causality, cached generation, training, remote code."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from pixeltok.models.pxby import PxByCache, PxByConfig, PxByForCausalLM, PxByModel
from pixeltok.models.pxby.modeling_pxby import CACHE_NAME
from pixeltok.tokenization.pixelbytes import PixelBytesTokenizer

BACKBONES = {
    "lstm": dict(backbone="lstm"),
    "bilstm": dict(backbone="lstm", bidirectional=True),
    "transformer": dict(backbone="transformer"),
    "mamba": dict(backbone="mamba"),
    "center": dict(backbone="lstm", embedding_type="center"),
    "noconv": dict(backbone="transformer", use_conv=False),
}


def tiny(name, **kw):
    cfg = dict(hidden_size=18, state_size=8, intermediate_size=16, num_attention_heads=3, num_hidden_layers=2)
    cfg.update(BACKBONES[name])
    cfg.update(kw)
    return PxByConfig(**cfg)


def model(name, seed=0, **kw):
    torch.manual_seed(seed)
    return PxByForCausalLM(tiny(name, **kw)).eval()


@pytest.fixture(scope="module")
def tok():
    return PixelBytesTokenizer()


def sample_ids(tok, seed=0, h=4, w=5, caption="a red cat", order="image_first"):
    grid = np.random.default_rng(seed).integers(0, 56, (h, w)).astype(np.int16)
    return grid, tok.encode_sample(grid, caption, order=order)


# --- config ------------------------------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    c = PxByConfig()
    assert c.model_type == "pxby" and c.embed_dim == max(9, 81 // 9) and c.vocab_size == 157
    for bad, field in [(dict(backbone="gru"), "backbone"), (dict(embedding_type="x"), "embedding_type"),
                       (dict(backbone="mamba", bidirectional=True), "bidirectional"), (dict(kernel_size=5), "kernel_size"),
                       (dict(backbone="transformer", hidden_size=20, num_attention_heads=3), "num_attention_heads"),
                       (dict(num_colors=100), "num_colors"), (dict(dropout=1.5), "dropout")]:
        with pytest.raises(ValueError, match=field):
            PxByConfig(**bad)


def test_auto_classes_resolve(tmp_path):
    assert AutoConfig.for_model("pxby").__class__ is PxByConfig
    cfg = tiny("lstm")
    assert type(AutoModel.from_config(cfg)) is PxByModel
    assert type(AutoModelForCausalLM.from_config(cfg)) is PxByForCausalLM
    PixelBytesTokenizer().save_pretrained(tmp_path)
    cfg.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is PxByConfig
    assert type(AutoTokenizer.from_pretrained(tmp_path)) is PixelBytesTokenizer


# --- save / load -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm", "bilstm", "transformer", "mamba"])
def test_save_load_identical_logits(name, tmp_path, tok):
    m = model(name)
    ids = torch.tensor([sample_ids(tok)[1]])
    m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_pxby.PxByForCausalLM"
    assert (tmp_path / "modeling_pxby.py").exists() and (tmp_path / "configuration_pxby.py").exists()
    for loaded in (PxByForCausalLM.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is PxByForCausalLM
        with torch.no_grad():
            assert torch.equal(loaded.eval()(ids).logits, m(ids).logits)
    base = AutoModel.from_pretrained(tmp_path)  # the base model loads out of the LM checkpoint
    with torch.no_grad():
        assert torch.equal(base.eval()(ids).last_hidden_state, m.model(ids).last_hidden_state)


# --- causality ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKBONES))
def test_no_future_token_changes_a_past_logit(name, tok):
    m = model(name)
    _, ids = sample_ids(tok, h=5, w=6)
    a = torch.tensor([ids])
    with torch.no_grad():
        full = m(a).logits
        for t in (3, 12, 20, len(ids) - 5):
            b = a.clone()
            b[0, t:] = torch.randint(3, 157, (len(ids) - t,), generator=torch.Generator().manual_seed(t))
            changed = m(b).logits
            assert torch.allclose(changed[:, :t], full[:, :t], atol=1e-6), (name, t)
            assert not torch.allclose(changed[:, t:], full[:, t:])  # the future does matter to the future


def test_bidirectional_lstm_is_a_backward_pass_over_the_known_context():
    """One bi-LSTM layer: output at t == last output of nn.LSTM(bidirectional=True) run on x[:t+1], whatever the
    reverse direction's recurrent weights (they multiply a zero state, so the model does not hold them)."""
    m = model("bilstm", num_hidden_layers=1).model.backbone
    ref = nn.LSTM(18, 8, batch_first=True, bidirectional=True)
    H = 8
    with torch.no_grad():
        for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, n).copy_(getattr(m.fwd[0], n))
        i, g, o = m.bwd[0].weight.chunk(3)  # the cell's rows are (i, g, o); nn.LSTM's are (i, f, g, o)
        ref.weight_ih_l0_reverse.copy_(torch.cat([i, torch.randn(H, 18), g, o]))
        bi, bg, bo = m.bwd[0].bias.chunk(3)
        ref.bias_ih_l0_reverse.copy_(torch.cat([bi, torch.randn(H), bg, bo]))
        ref.bias_hh_l0_reverse.zero_()  # weight_hh_l0_reverse keeps its random values: it must not matter
        x = torch.randn(2, 9, 18)
        ours = m(x)[0]
        for t in range(9):
            assert torch.allclose(ours[:, t], ref(x[:, : t + 1])[0][:, -1], atol=1e-6)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_parameter_gets_a_gradient(name, tok):
    """DDP (without find_unused_parameters) needs every parameter to be reached by the loss, with a padded batch."""
    m = model(name).train()
    a, b = sample_ids(tok, seed=1)[1], sample_ids(tok, seed=2, h=3, w=4, caption="dog")[1]
    L = len(a)
    ids = torch.tensor([a, b + [0] * (L - len(b))])
    mask = (ids != 0).long()
    m(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
    dead = [n for n, p in m.named_parameters() if not p.grad.any() and "embed.weight" not in n]
    assert not dead, dead  # zero everywhere: a parameter that cannot influence the loss


# --- generation --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm", "bilstm", "transformer", "mamba"])
def test_generate_uses_the_cache_and_matches_rerunning(name, tok):
    m = model(name)
    prompt = torch.tensor([sample_ids(tok, order="caption_first")[1][:16]])
    lengths = []
    hook = m.model.register_forward_pre_hook(lambda mod, args, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    out = m.generate(prompt, max_new_tokens=12, do_sample=False)
    hook.remove()
    assert lengths == [16] + [1] * 11  # prompt once, then one new token per step
    seq = prompt
    with torch.no_grad():
        for _ in range(12):  # the baseline: re-run the whole sequence without any state
            seq = torch.cat([seq, m(seq, use_cache=False).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, seq)
    beams = m.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False)  # reorder_cache
    assert torch.equal(beams, m.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, use_cache=False))
    s = m.generate(prompt, max_new_tokens=6, do_sample=True, top_k=10, top_p=0.9, num_return_sequences=2)
    assert s.shape == (2, 22)


@pytest.mark.parametrize("name", ["lstm", "transformer", "mamba"])
def test_left_padded_batch_generates_like_single_prompts(name):
    m = model(name)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(3, 157, (1, 12), generator=g), torch.randint(3, 157, (1, 7), generator=g)
    batch, mask = torch.zeros(2, 12, dtype=torch.long), torch.zeros(2, 12, dtype=torch.long)
    batch[0], batch[1, 5:], mask[0], mask[1, 5:] = a[0], b[0], 1, 1
    out = m.generate(batch, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(out[0, 12:], m.generate(a, max_new_tokens=8, do_sample=False)[0, 12:])
    assert torch.equal(out[1, 12:], m.generate(b, max_new_tokens=8, do_sample=False)[0, 7:])
    with pytest.raises(ValueError, match="contiguous"):
        m(batch, attention_mask=torch.tensor([[1] * 12, [1, 0] * 6]))


@pytest.mark.parametrize("name", ["lstm", "bilstm", "transformer", "mamba"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_logits_equal_single_rows(name, side):
    """A padded batch gives each row's own logits at its real tokens, with and without a cache (the LSTM packs
    rows only when it must return a state)."""
    m = model(name)
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(3, 157, (n,), generator=g) for n in (12, 7, 9)]
    ids, mask = torch.zeros(3, 12, dtype=torch.long), torch.zeros(3, 12, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(12 - len(r), 12) if side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl] = r, 1
    with torch.no_grad():
        for use_cache in (False, True):
            logits = m(ids, attention_mask=mask, use_cache=use_cache).logits
            for i, r in enumerate(rows):
                assert torch.allclose(logits[i][mask[i].bool()], m(r[None]).logits[0], atol=1e-5), (i, use_cache)


def test_generation_windows_equal_windows_of_the_finished_sequence(tok):
    m = model("lstm")
    prompt = torch.tensor([sample_ids(tok, order="caption_first", h=6, w=7)[1][:30]])  # cut inside the image
    seen = []
    hook = m.model.embed.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    out = m.generate(prompt, max_new_tokens=40, do_sample=True, top_k=20)
    hook.remove()
    used = torch.cat(seen, 1)[:, : out.shape[1] - 1]  # the last token is never fed back
    assert torch.equal(used, m.model.windows(out[:, :-1]))


# --- training ----------------------------------------------------------------------------------------------------------
def test_loss_covers_every_position_and_ignores_minus_100(tok):
    m = model("lstm")
    ids = torch.tensor([sample_ids(tok)[1]])
    labels = ids.clone()
    labels[0, :5] = -100
    out = m(ids, labels=labels)
    ref = nn.functional.cross_entropy(out.logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert torch.allclose(out.loss, ref)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_learns_a_tiny_fixture(name, tok):
    torch.manual_seed(0)
    m = PxByForCausalLM(tiny(name)).train()
    batch = [sample_ids(tok, seed=s, h=3, w=4, caption=c)[1] for s, c in enumerate(["cat", "dog!"])]
    L = max(map(len, batch))
    ids = torch.tensor([b + [0] * (L - len(b)) for b in batch])
    mask = (torch.arange(L)[None] < torch.tensor([len(b) for b in batch])[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        loss = m(ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0] and np.mean(losses[-5:]) < np.mean(losses[:5]), losses


def test_generate_produces_a_decodable_caption_and_image(tok):
    """Overfit one caption -> image sample, then generate the image from the caption."""
    torch.manual_seed(0)
    grid, ids = sample_ids(tok, seed=3, h=4, w=5, caption="a tiny bat", order="caption_first")
    m = PxByForCausalLM(tiny("lstm", hidden_size=36, state_size=48)).train()
    x = torch.tensor([ids])
    opt = torch.optim.AdamW(m.parameters(), lr=2e-2)
    for _ in range(600):  # until memorised: how many steps that takes differs between CPUs' float kernels
        loss = m(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
    m.eval()
    prompt_len = 1 + len("a tiny bat") + 1  # <bos> caption \n
    out = m.generate(x[:, :prompt_len], max_new_tokens=len(ids), do_sample=False, eos_token_id=tok.eos_token_id)
    caption, image = tok.decode_sample(out[0])
    assert caption == "a tiny bat"
    assert image is not None and image.size == (5, 4)
    assert np.array_equal(np.asarray(image), tok.color_palette.indices_to_rgba(grid))


# --- remote code -------------------------------------------------------------------------------------------------------
def test_trust_remote_code_loads_in_a_fresh_process_without_pixeltok(tmp_path, tok):
    m = model("bilstm")
    m.save_pretrained(tmp_path / "ckpt")
    ids = torch.tensor([sample_ids(tok)[1]])
    with torch.no_grad():
        expected = m(ids).logits
    np.save(tmp_path / "ids.npy", ids.numpy())
    code = textwrap.dedent(f"""
        import importlib.abc, sys, numpy as np, torch

        class NoPixeltok(importlib.abc.MetaPathFinder):  # the saved folder must not need pixeltok
            def find_spec(self, name, path=None, target=None):
                if name == "pixeltok" or name.startswith("pixeltok."):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NoPixeltok())
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'ckpt')!r}, trust_remote_code=True).eval()
        ids = torch.from_numpy(np.load({str(tmp_path / 'ids.npy')!r}))
        with torch.no_grad():
            np.save({str(tmp_path / 'logits.npy')!r}, m(ids).logits.numpy())
            out = m.generate(ids[:, :10], max_new_tokens=5, do_sample=False)
        assert out.shape == (1, 15)
        print(type(m).__module__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "transformers_modules" in r.stdout
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "logits.npy")), expected)


def test_cache_object_is_reused_across_calls(tok):
    m = model("transformer")
    ids = torch.tensor([sample_ids(tok)[1]])
    with torch.no_grad():
        full = m(ids).logits
        out = m(ids[:, :20], use_cache=True)
        cache = out[CACHE_NAME]  # `cache` from transformers 5.24 on, `past_key_values` before
        assert isinstance(cache, PxByCache) and cache.get_seq_length() == 20
        rest = m(ids[:, 20:], cache=cache, use_cache=True).logits
    assert torch.allclose(torch.cat([out.logits, rest], 1), full, atol=1e-5)
    with torch.no_grad():  # the pre-5.24 keyword still works
        out = m(ids[:, :20], use_cache=True)
        rest = m(ids[:, 20:], past_key_values=out[CACHE_NAME], use_cache=True).logits
    assert torch.allclose(torch.cat([out.logits, rest], 1), full, atol=1e-5)


@pytest.mark.parametrize("backbone", ["lstm", "transformer", "mamba"])
def test_generate_prints_no_warning_and_steps_one_token_at_a_time(tmp_path, tok, backbone):
    """transformers 5.24 renamed `past_key_values` to `cache`: generate must hand our cache back (one new token per
    forward after the prompt) and print nothing, on the installed release. A fresh process, since transformers
    warns only once per process."""
    m = model(backbone)
    m.save_pretrained(tmp_path / "ckpt")
    code = textwrap.dedent(f"""
        import torch, pixeltok
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging
        logging.disable_progress_bar()  # transformers' own "Loading weights" bar: not ours to judge here
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'ckpt')!r}).eval()
        lengths = []
        m.model.register_forward_pre_hook(lambda mod, args, kw: lengths.append(kw["input_ids"].shape[1]),
                                          with_kwargs=True)
        out = m.generate(torch.tensor([[1, 72, 105, 10]]), max_new_tokens=6, do_sample=False)
        assert out.shape == (1, 10), out.shape
        assert lengths == [4, 1, 1, 1, 1, 1], lengths
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"
    assert r.stderr == "", r.stderr[-3000:]
