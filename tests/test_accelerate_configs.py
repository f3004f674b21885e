"""Every launch config in recipes/accelerate/ is one accelerate itself accepts, with the topology its name says."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_accelerate_reads_the_config(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    raw = yaml.safe_load(path.read_text())
    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    known = set(ClusterConfig.__dataclass_fields__)
    assert set(raw) <= known, set(raw) - known  # no key accelerate would ignore
    if path.stem.startswith("multinode"):
        assert cfg.num_machines > 1 and cfg.num_processes % cfg.num_machines == 0 and cfg.main_process_ip
    if path.stem.startswith("cpu"):
        assert cfg.use_cpu and cfg.num_processes == int(path.stem[3:])


def test_there_are_cpu_single_gpu_multi_gpu_and_multi_node_configs():
    assert {"cpu1", "cpu2", "gpu1", "gpu_ddp", "multinode_ddp"} <= {p.stem for p in CONFIGS}
