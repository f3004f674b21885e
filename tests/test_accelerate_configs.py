"""Every launch config in recipes/accelerate/ is one accelerate itself accepts, with the topology its name says."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_accelerate_reads_the_config(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    raw = yaml.safe_load(path.read_text())
    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    known = set(ClusterConfig.__dataclass_fields__)
    assert set(raw) <= known, set(raw) - known  # no key accelerate would ignore
    if path.stem.startswith("multinode"):
        assert cfg.num_machines > 1 and cfg.num_processes % cfg.num_machines == 0 and cfg.main_process_ip
    if path.stem.startswith("cpu"):
        assert cfg.use_cpu and cfg.num_processes == int(path.stem[3:])
    if path.stem.endswith("_ddp"):
        assert cfg.distributed_type == DistributedType.MULTI_GPU and not cfg.use_cpu
    if path.stem.endswith("_fsdp"):
        assert cfg.distributed_type == DistributedType.FSDP and not cfg.use_cpu
        assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.mixed_precision == "bf16"


def test_there_are_cpu_single_gpu_multi_gpu_and_multi_node_configs():
    assert {"cpu1", "cpu2", "gpu1", "gpu_ddp", "multinode_ddp", "gpu_fsdp"} <= {p.stem for p in CONFIGS}


def test_the_fsdp_config_reaches_each_rank_as_fsdp2_wrapping_every_decoder_layer(monkeypatch):
    """What ``accelerate launch --config_file gpu_fsdp.yaml`` exports to each rank builds an FSDP2 plugin with full
    state dicts whose transformer-layer policy (no class named: the model's ``_no_split_modules``) wraps the decoder
    layers of the model types train_lm.py builds."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from accelerate.utils.launch import prepare_multi_gpu_env
    from torch.distributed.fsdp import StateDictType
    from transformers import AutoConfig, AutoModelForCausalLM

    args = launch_command_parser().parse_args(["--config_file", str(ROOT / "recipes/accelerate/gpu_fsdp.yaml"), "x.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for k, v in env.items():
        if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP":
            monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.transformer_cls_names_to_wrap is None and plugin.reshard_after_forward is True
    for kind, fields, layer in [
        ("llama", dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2), "LlamaDecoderLayer"),
        ("gpt2", dict(n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0), "GPT2Block"),
        ("mamba", dict(hidden_size=16, num_hidden_layers=2, state_size=4), "MambaBlock"),
    ]:
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, vocab_size=64, **fields))
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        wrapped = [type(m).__name__ for m in model.modules() if policy(m)]
        assert wrapped.count(layer) == 2, (kind, wrapped)
