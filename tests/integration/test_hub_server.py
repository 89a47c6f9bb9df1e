"""The loopback Hub server speaks the protocol the real huggingface_hub client and transformers expect.

Every test passes `endpoint=` explicitly: huggingface_hub reads HF_ENDPOINT once, at import, and
transformers builds its Hub calls from that import-time value (`from_pretrained` has no endpoint
argument). So transformers is tested by loading the folder `snapshot_download` returns.
`from_pretrained("org/name")` does load from this server when HF_ENDPOINT is set before the process
imports them (checked by hand in a subprocess; too slow to repeat here).
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from guanaco_dagster.ports import port_open
from guanaco_dagster.testing.hub_server import HubServer, publish_repo
from tests.fixtures.hub import HubFixture

TOKEN = "hf_guanaco_reader"


def files_under(folder: str | Path) -> dict[str, bytes]:
    """Relative path → content of every file in a folder (following the cache's symlinks)."""
    root = Path(folder)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".cache" not in path.relative_to(root).parts
    }


def make_folder(path: Path, files: dict[str, str]) -> Path:
    """A small repo folder with the given text files."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


@pytest.fixture(scope="module")
def restricted_repos(hub_server: HubFixture, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private and a gated repo, both readable with TOKEN; returns kind → repo id."""
    source = make_folder(
        tmp_path_factory.mktemp("restricted"), {"README.md": "# card\n", "config.json": '{"a": 1}\n'}
    )
    repos = {"private": "guanaco-tests/private-model", "gated": "guanaco-tests/gated-model"}
    for kind, repo_id in repos.items():
        hub_server.publish(repo_id, source)
        hub_server.restrict(repo_id, [TOKEN], gated=kind == "gated")
    return repos


@pytest.fixture
def faulty_server(hub_server: HubFixture) -> Iterator[HubServer]:
    """The session's server, with any fault a test leaves unserved dropped afterwards."""
    yield hub_server.server
    hub_server.server.clear_faults()


# --- metadata --------------------------------------------------------------------------------------------


def test_model_info_at_main_reports_the_published_commit_and_files(hub_server, tiny_model_dir):
    info = HfApi(endpoint=hub_server.endpoint).model_info(hub_server.repo_id)

    assert info.sha == hub_server.main_sha
    assert sorted(sibling.rfilename for sibling in info.siblings) == sorted(files_under(tiny_model_dir))
    assert info.private is False and info.gated is False


def test_model_info_gives_file_sizes_and_lfs_hashes_only_when_asked_like_the_hub(hub_server, tiny_model_dir):
    api = HfApi(endpoint=hub_server.endpoint)

    plain = {s.rfilename: s for s in api.model_info(hub_server.repo_id).siblings}
    detailed = {s.rfilename: s for s in api.model_info(hub_server.repo_id, files_metadata=True).siblings}

    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert plain["model.safetensors"].size is None
    assert detailed["model.safetensors"].size == len(weights)
    assert detailed["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert detailed["config.json"].lfs is None


def test_model_info_counts_safetensors_parameters(hub_server):
    info = HfApi(endpoint=hub_server.endpoint).model_info(hub_server.repo_id)

    assert info.safetensors is not None and info.safetensors.total > 0
    assert info.config["architectures"] == ["LlamaForCausalLM"]


def test_list_repo_files_lists_every_published_file(hub_server, tiny_model_dir):
    files = HfApi(endpoint=hub_server.endpoint).list_repo_files(hub_server.repo_id)

    assert sorted(files) == sorted(files_under(tiny_model_dir))


def test_tree_listing_of_a_subfolder_lists_its_entries_only(hub_server, tmp_path):
    source = make_folder(tmp_path, {"a.txt": "a", "sub/b.txt": "b", "sub/deeper/c.txt": "c"})
    hub_server.publish("guanaco-tests/nested", source)
    api = HfApi(endpoint=hub_server.endpoint)

    top = {entry.path for entry in api.list_repo_tree("guanaco-tests/nested")}
    sub = {
        entry.path for entry in api.list_repo_tree("guanaco-tests/nested", path_in_repo="sub", recursive=True)
    }

    assert top == {"a.txt", "sub"}
    assert sub == {"sub/b.txt", "sub/deeper", "sub/deeper/c.txt"}


def test_tree_listing_follows_the_next_page_link(hub_server, tiny_model_dir):
    with HubServer(hub_server.root, tree_page_size=2) as small_pages:
        files = HfApi(endpoint=small_pages.endpoint).list_repo_files(hub_server.repo_id)
        tree_requests = [r for r in small_pages.requests if "/tree/" in r.path]

    assert sorted(files) == sorted(files_under(tiny_model_dir))
    assert len(tree_requests) == 3  # 6 files, 2 per page
    assert "cursor=4" in tree_requests[-1].path


# --- downloads and revisions ------------------------------------------------------------------------------


def test_snapshot_at_main_and_at_its_sha_download_identical_files(hub_server, tiny_model_dir, tmp_path):
    by_branch = snapshot_download(hub_server.repo_id, endpoint=hub_server.endpoint, cache_dir=tmp_path / "a")
    by_sha = snapshot_download(
        hub_server.repo_id,
        revision=hub_server.main_sha,
        endpoint=hub_server.endpoint,
        cache_dir=tmp_path / "b",
    )

    assert files_under(by_branch) == files_under(by_sha) == files_under(tiny_model_dir)
    assert Path(by_branch).name == Path(by_sha).name == hub_server.main_sha  # the resolved commit


def test_snapshot_at_an_exact_sha_skips_resolving_the_revision(hub_server, tmp_path):
    before = len(hub_server.server.requests)
    snapshot_download(
        hub_server.repo_id, revision=hub_server.main_sha, endpoint=hub_server.endpoint, cache_dir=tmp_path
    )

    paths = [record.path for record in hub_server.server.requests[before:]]
    assert not any("/revision/" in path for path in paths)
    assert any(
        path.startswith(f"/api/models/{hub_server.repo_id}/tree/{hub_server.main_sha}") for path in paths
    )


def test_a_second_ref_serves_its_own_commit(hub_server, tmp_path):
    repo_id = "guanaco-tests/two-refs"
    v1_sha = hub_server.publish(repo_id, make_folder(tmp_path / "v1", {"README.md": "version one"}))
    v2_sha = hub_server.publish(repo_id, make_folder(tmp_path / "v2", {"README.md": "version two"}), ref="v2")
    api = HfApi(endpoint=hub_server.endpoint)

    readme_v2 = hf_hub_download(
        repo_id, "README.md", revision="v2", endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache"
    )

    assert v1_sha != v2_sha
    assert api.model_info(repo_id).sha == v1_sha
    assert api.model_info(repo_id, revision="v2").sha == v2_sha
    assert Path(readme_v2).read_text() == "version two"


def test_a_slash_revision_like_a_pull_request_ref_is_served(hub_server, tmp_path):
    repo_id = "guanaco-tests/with-pr"
    hub_server.publish(repo_id, make_folder(tmp_path / "main", {"README.md": "main"}))
    pr_sha = hub_server.publish(
        repo_id, make_folder(tmp_path / "pr", {"README.md": "pr one"}), ref="refs/pr/1"
    )

    readme = hf_hub_download(
        repo_id, "README.md", revision="refs/pr/1", endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache"
    )

    assert HfApi(endpoint=hub_server.endpoint).model_info(repo_id, revision="refs/pr/1").sha == pr_sha
    assert Path(readme).read_text() == "pr one"


def test_allow_patterns_download_only_matching_files(hub_server, tiny_model_dir, tmp_path):
    folder = snapshot_download(
        hub_server.repo_id, allow_patterns=["*.json"], endpoint=hub_server.endpoint, cache_dir=tmp_path
    )

    expected = sorted(name for name in files_under(tiny_model_dir) if name.endswith(".json"))
    assert sorted(files_under(folder)) == expected
    assert "model.safetensors" not in expected and expected


def test_head_gives_the_client_commit_etag_and_size(hub_server, tiny_model_dir):
    url = hf_hub_url(hub_server.repo_id, "model.safetensors", endpoint=hub_server.endpoint)

    metadata = get_hf_file_metadata(url)

    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert metadata.commit_hash == hub_server.main_sha
    assert metadata.etag == hashlib.sha256(weights).hexdigest()  # LFS files: sha256, as on the Hub
    assert metadata.size == len(weights)


def test_range_get_answers_206_with_the_requested_bytes(hub_server, tiny_model_dir):
    url = hf_hub_url(hub_server.repo_id, "model.safetensors", endpoint=hub_server.endpoint)
    request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})

    with urllib.request.urlopen(request, timeout=5) as response:
        status, body, content_range = response.status, response.read(), response.headers["Content-Range"]

    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert status == 206
    assert body == weights[10:20]
    assert content_range == f"bytes 10-19/{len(weights)}"


def test_downloads_without_cache_dir_stay_in_the_sessions_temporary_hf_home(hub_server):
    import huggingface_hub.constants as hf_constants

    config = Path(hf_hub_download(hub_server.repo_id, "config.json", endpoint=hub_server.endpoint))

    assert config.is_relative_to(hf_constants.HF_HUB_CACHE)
    assert Path(hf_constants.HF_HOME).name.startswith("hf-home")


def test_published_commits_are_content_addressed(tmp_path):
    source = make_folder(tmp_path / "src", {"README.md": "same"})

    first = publish_repo(tmp_path / "root", "org/model", source)
    again = publish_repo(tmp_path / "root", "org/model", source, ref="copy")
    (source / "README.md").write_text("changed")
    changed = publish_repo(tmp_path / "root", "org/model", source)

    assert first == again != changed
    assert len(first) == 40 and int(first, 16) >= 0


# --- errors the client turns into typed exceptions ---------------------------------------------------------


def test_unknown_repo_raises_repository_not_found(hub_server):
    with pytest.raises(RepositoryNotFoundError) as caught:
        HfApi(endpoint=hub_server.endpoint).model_info("guanaco-tests/does-not-exist")

    assert caught.value.response.status_code == 404
    assert "guanaco-tests/does-not-exist" in str(caught.value)


def test_unknown_revision_raises_revision_not_found(hub_server, tmp_path):
    with pytest.raises(RevisionNotFoundError, match="'v9' not found"):
        snapshot_download(hub_server.repo_id, revision="v9", endpoint=hub_server.endpoint, cache_dir=tmp_path)


def test_unknown_file_raises_entry_not_found(hub_server, tmp_path):
    with pytest.raises(EntryNotFoundError) as caught:
        hf_hub_download(
            hub_server.repo_id, "pytorch_model.bin", endpoint=hub_server.endpoint, cache_dir=tmp_path
        )

    assert isinstance(caught.value, HfHubHTTPError) and caught.value.response.status_code == 404


def test_private_repo_without_token_looks_missing(hub_server, restricted_repos, tmp_path):
    with pytest.raises(RepositoryNotFoundError) as caught:
        snapshot_download(
            restricted_repos["private"], token=False, endpoint=hub_server.endpoint, cache_dir=tmp_path
        )

    assert caught.value.response.status_code == 401
    assert "no token was sent" in str(caught.value)


def test_private_repo_refuses_a_wrong_token(hub_server, restricted_repos, tmp_path):
    with pytest.raises(RepositoryNotFoundError) as caught:
        snapshot_download(
            restricted_repos["private"], token="hf_wrong", endpoint=hub_server.endpoint, cache_dir=tmp_path
        )

    assert caught.value.response.status_code == 404  # the Hub's answer to a token without access
    assert "no access" in str(caught.value)


def test_private_repo_downloads_with_the_right_token(hub_server, restricted_repos, tmp_path):
    folder = snapshot_download(
        restricted_repos["private"], token=TOKEN, endpoint=hub_server.endpoint, cache_dir=tmp_path
    )

    assert files_under(folder)["config.json"] == b'{"a": 1}\n'


def test_gated_repo_shows_its_info_and_card_but_not_its_files_without_a_token(
    hub_server, restricted_repos, tmp_path
):
    repo_id = restricted_repos["gated"]

    info = HfApi(endpoint=hub_server.endpoint).model_info(repo_id, token=False)
    card = hf_hub_download(
        repo_id, "README.md", token=False, endpoint=hub_server.endpoint, cache_dir=tmp_path
    )
    with pytest.raises(GatedRepoError) as caught:
        hf_hub_download(repo_id, "config.json", token=False, endpoint=hub_server.endpoint, cache_dir=tmp_path)

    assert info.gated == "manual"
    assert Path(card).read_text() == "# card\n"
    assert caught.value.response.status_code == 401


def test_gated_repo_refuses_an_unlisted_token_and_serves_a_listed_one(hub_server, restricted_repos, tmp_path):
    repo_id = restricted_repos["gated"]

    with pytest.raises(GatedRepoError) as caught:
        hf_hub_download(
            repo_id, "config.json", token="hf_wrong", endpoint=hub_server.endpoint, cache_dir=tmp_path
        )
    config = hf_hub_download(
        repo_id, "config.json", token=TOKEN, endpoint=hub_server.endpoint, cache_dir=tmp_path
    )

    assert caught.value.response.status_code == 403
    assert Path(config).read_text() == '{"a": 1}\n'


# --- fault injection ---------------------------------------------------------------------------------------


def test_injected_503_reaches_the_client_then_the_server_recovers(hub_server, faulty_server):
    api = HfApi(endpoint=hub_server.endpoint)
    faulty_server.inject_faults(status=503, count=1)
    before = faulty_server.request_count

    with pytest.raises(HfHubHTTPError) as caught:
        api.model_info(hub_server.repo_id)
    after_fault = faulty_server.request_count
    info = api.model_info(hub_server.repo_id)

    assert caught.value.response.status_code == 503
    assert after_fault == before + 1  # model_info does not retry
    assert info.sha == hub_server.main_sha


def test_injected_delay_trips_the_client_timeout(hub_server, faulty_server):
    faulty_server.inject_faults(status=None, count=1, delay_s=2.0)

    with pytest.raises(httpx2.TimeoutException):
        HfApi(endpoint=hub_server.endpoint).model_info(hub_server.repo_id, timeout=0.2)

    assert HfApi(endpoint=hub_server.endpoint).model_info(hub_server.repo_id).sha == hub_server.main_sha


def test_a_stopped_server_releases_its_port(tmp_path):
    with HubServer(tmp_path) as server:
        port = server.port
        assert port_open("127.0.0.1", port)

    assert not port_open("127.0.0.1", port)


def test_stop_cuts_keep_alive_connections(tmp_path):
    server = HubServer(tmp_path).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    connection.request("GET", "/api/models/org/missing")
    assert connection.getresponse().read()  # answered; HTTP/1.1 keeps the connection open

    server.stop()

    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("GET", "/api/models/org/missing")
        connection.getresponse()


# --- transformers ------------------------------------------------------------------------------------------


def test_transformers_loads_the_downloaded_snapshot_and_computes_logits(hub_server, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = snapshot_download(hub_server.repo_id, endpoint=hub_server.endpoint, cache_dir=tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)

    inputs = tokenizer("The quick brown fox", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits

    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()
