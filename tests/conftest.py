"""Test-session set-up. Environment first: the HF libraries read these once, at import."""

import os
import re
import shutil
import sys
import tempfile
import uuid

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

# The local Hub (tests/hub_server.py): bound now so HF_ENDPOINT is known before any HF library is imported
# (huggingface_hub, transformers and datasets read it once). It serves from a daemon thread for the whole
# session, so a test that touches "the Hub" by accident fails fast with RepoNotFound instead of hanging.
# HF_HOME is a throw-away folder: downloads from this server never mix with a real cache.
sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer  # noqa: E402

_HUB = HubServer().start()
_HF_HOME = tempfile.mkdtemp(prefix="pixeltok-test-hf-home-")
os.environ["HF_ENDPOINT"] = _HUB.url
os.environ["HF_TOKEN"] = _HUB.token
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_XET"] = "1"  # LFS files go through the plain LFS protocol this server speaks
os.environ.pop("HF_HUB_OFFLINE", None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_report_header(config):
    """The versions this run resolved: an upstream release that breaks a test is then visible in the log."""
    from importlib.metadata import version

    names = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "huggingface_hub", "numpy", "pillow")
    return "pixeltok stack: " + ", ".join(f"{n} {version(n)}" for n in names)


def pytest_unconfigure(config):
    _HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    """The session's local Hub server (``.url`` == ``HF_ENDPOINT``, ``.token``, ``.user``, ``.log``)."""
    return _HUB


@pytest.fixture(scope="session")
def hub_token(hub_server) -> str:
    """A write token for ``hub_server.user`` (also exported as ``HF_TOKEN``)."""
    return hub_server.token


@pytest.fixture
def hub_repo_id(hub_server, request) -> str:
    """A fresh ``user/name`` repo id, unique per test (the server keeps state for the whole session)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:60]
    return f"{hub_server.user}/{name}-{uuid.uuid4().hex[:8]}"
