"""The local Hub server against the real clients: huggingface_hub, transformers and datasets over HTTP.

No mocks: every call below goes through the libraries' own HTTP code to ``tests/hub_server.py`` on
127.0.0.1 (``HF_ENDPOINT`` is set by conftest.py before any HF import).
"""

import hashlib
import os

import numpy as np
import pytest
import torch
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    create_repo,
    hf_hub_download,
    list_repo_files,
    snapshot_download,
    upload_file,
    upload_folder,
)
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import get_session
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


def test_endpoint_points_at_local_server(hub_server):
    assert hf_constants.ENDPOINT == hub_server.url
    assert hf_constants.HF_HUB_DISABLE_XET
    assert HfApi().whoami()["name"] == hub_server.user
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_wrong").whoami()


def test_create_upload_download_round_trip(hub_repo_id, tmp_path):
    url = create_repo(hub_repo_id)
    assert url.repo_id == hub_repo_id
    # 409 from the server: an error unless exist_ok
    with pytest.raises(HfHubHTTPError) as e:
        create_repo(hub_repo_id)
    assert e.value.response.status_code == 409
    assert create_repo(hub_repo_id, exist_ok=True).repo_id == hub_repo_id

    small = b"hello pixeltok\n"
    big = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()  # binary -> LFS
    upload_file(path_or_fileobj=small, path_in_repo="notes/hello.txt", repo_id=hub_repo_id)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.safetensors").write_bytes(big)
    (folder / "config.json").write_text('{"a": 1}')
    upload_folder(folder_path=folder, repo_id=hub_repo_id, commit_message="add folder")

    files = sorted(list_repo_files(hub_repo_id))
    assert files == [".gitattributes", "config.json", "notes/hello.txt", "sub/weights.safetensors"]

    api = HfApi()
    info = api.model_info(hub_repo_id, files_metadata=True)
    assert len(info.sha) == 40
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["sub/weights.safetensors"] == len(big)
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["sub/weights.safetensors"].sha256 == hashlib.sha256(big).hexdigest()
    assert lfs["config.json"] is None

    p = hf_hub_download(hub_repo_id, "sub/weights.safetensors", cache_dir=tmp_path / "cache")
    assert open(p, "rb").read() == big
    p = hf_hub_download(hub_repo_id, "notes/hello.txt", cache_dir=tmp_path / "cache")
    assert open(p, "rb").read() == small

    snap = snapshot_download(hub_repo_id, cache_dir=tmp_path / "cache2")
    assert open(os.path.join(snap, "sub/weights.safetensors"), "rb").read() == big
    assert open(os.path.join(snap, "config.json")).read() == '{"a": 1}'

    tree = {f.path for f in api.list_repo_tree(hub_repo_id, recursive=True)}
    assert {"sub", "sub/weights.safetensors", "notes/hello.txt"} <= tree
    assert {f.path for f in api.list_repo_tree(hub_repo_id)} == {".gitattributes", "config.json", "notes", "sub"}
    infos = api.get_paths_info(hub_repo_id, ["config.json", "sub", "missing.txt"])
    assert [type(i).__name__ for i in infos] == ["RepoFile", "RepoFolder"]

    commits = api.list_repo_commits(hub_repo_id)
    assert [c.title for c in commits] == ["add folder", "Upload notes/hello.txt with huggingface_hub", "initial commit"]
    assert commits[0].commit_id == info.sha

    # Range requests (used by HfFileSystem and resumed downloads)
    r = get_session().get(f"{hf_constants.ENDPOINT}/{hub_repo_id}/resolve/main/sub/weights.safetensors",
                  headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == big[10:20]
    assert r.headers["X-Repo-Commit"] == info.sha


def test_errors_carry_hub_error_codes(hub_repo_id, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub_repo_id, "x.txt", cache_dir=tmp_path)
    create_repo(hub_repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "missing.txt", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path)
    # HEAD replies carry the code but no body
    r = get_session().head(f"{hf_constants.ENDPOINT}/{hub_repo_id}/resolve/main/missing.txt")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound" and r.content == b""


def test_parent_commit_mismatch_is_412(hub_repo_id):
    api = HfApi()
    create_repo(hub_repo_id)
    first = api.model_info(hub_repo_id).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=hub_repo_id)
    with pytest.raises(HfHubHTTPError) as e:
        api.create_commit(hub_repo_id, [CommitOperationAdd("b.txt", b"2")], commit_message="stale",
                          parent_commit=first)
    assert e.value.response.status_code == 412
    head = api.model_info(hub_repo_id).sha
    api.create_commit(hub_repo_id, [CommitOperationAdd("b.txt", b"2")], commit_message="fresh", parent_commit=head)
    api.delete_file("a.txt", hub_repo_id)
    assert sorted(api.list_repo_files(hub_repo_id)) == [".gitattributes", "b.txt"]


def test_branches_private_and_delete(hub_repo_id, tmp_path):
    api = HfApi()
    create_repo(hub_repo_id, private=True)
    assert api.model_info(hub_repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):  # anonymous callers cannot see a private repo
        HfApi(token=False).model_info(hub_repo_id)

    api.upload_file(path_or_fileobj=b"main", path_in_repo="v.txt", repo_id=hub_repo_id)
    api.create_branch(hub_repo_id, branch="exp")
    api.upload_file(path_or_fileobj=b"exp", path_in_repo="v.txt", repo_id=hub_repo_id, revision="exp")
    assert {b.name for b in api.list_repo_refs(hub_repo_id).branches} == {"main", "exp"}
    main = hf_hub_download(hub_repo_id, "v.txt", cache_dir=tmp_path)
    exp = hf_hub_download(hub_repo_id, "v.txt", revision="exp", cache_dir=tmp_path)
    assert open(main).read() == "main" and open(exp).read() == "exp"
    assert api.model_info(hub_repo_id, revision="exp").sha != api.model_info(hub_repo_id).sha

    api.update_repo_settings(hub_repo_id, private=False)
    assert HfApi(token=False).model_info(hub_repo_id).private is False
    api.delete_repo(hub_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<eos>", "red", "green", "blue", "pixel", "row", "end"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


def test_transformers_push_to_hub_and_from_pretrained(hub_repo_id, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = _tiny_tokenizer()
    model = GPT2LMHeadModel(GPT2Config(vocab_size=9, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    model.push_to_hub(hub_repo_id, commit_message="model")
    tokenizer.push_to_hub(hub_repo_id, commit_message="tokenizer")
    files = set(list_repo_files(hub_repo_id))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files

    model2 = AutoModelForCausalLM.from_pretrained(hub_repo_id, cache_dir=tmp_path).eval()
    tokenizer2 = AutoTokenizer.from_pretrained(hub_repo_id, cache_dir=tmp_path)
    text = "red green pixel row blue end violet"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == tokenizer2(text, return_tensors="pt").input_ids.tolist()
    assert tokenizer2.get_vocab() == tokenizer.get_vocab()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model2(ids).logits)

    # a second push of unchanged weights is skipped by the client (the server reports the remote oid)
    n_commits = len(HfApi().list_repo_commits(hub_repo_id))
    model.push_to_hub(hub_repo_id, commit_message="again")
    assert len(HfApi().list_repo_commits(hub_repo_id)) == n_commits


def test_datasets_push_to_hub_and_load_dataset(hub_repo_id, tmp_path):
    from datasets import Dataset, Features, Image, Value, load_dataset
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    images = [PILImage.fromarray(rng.integers(0, 256, (5 + i, 4, 3), dtype=np.uint8)) for i in range(6)]
    features = Features({"caption": Value("string"), "n": Value("int32"), "image": Image()})
    ds = Dataset.from_dict({"caption": [f"sprite {i}" for i in range(6)], "n": list(range(6)), "image": images},
                           features=features)
    ds.push_to_hub(hub_repo_id, private=True)
    files = set(HfApi().list_repo_files(hub_repo_id, repo_type="dataset"))
    assert "README.md" in files and any(f.endswith(".parquet") for f in files)

    back = load_dataset(hub_repo_id, split="train", cache_dir=str(tmp_path))
    assert back.features == features
    assert back["caption"] == ds["caption"] and back["n"] == ds["n"]
    for a, b in zip(back["image"], images):
        assert np.array_equal(np.asarray(a), np.asarray(b))
