"""Verified downloads against a local HTTP server: checksums, truncation, retries, resume, mirrors."""

import hashlib

import pytest

from pipeline.data.download import DownloadError, RemoteFile, fetch

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture
def served(http_server):
    (http_server.root / "blob.bin").write_bytes(PAYLOAD)
    return http_server


def remote(server, *modes, checksum=None, name="blob.bin"):
    checksum = checksum or "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    return RemoteFile(name, tuple(f"{server.url}/{m}/{name}" for m in modes), checksum)


def fetch_quick(remote_file, cache, **kwargs):
    return fetch(remote_file, cache, backoff_s=0.0, timeout_s=5, progress=False, **kwargs)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"  # beside the server's www/ directory


def test_download_verifies_and_leaves_no_partial_file(served, cache):
    path = fetch_quick(remote(served, "plain"), cache)
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["blob.bin"]
    # A verified file in the cache is reused without a request.
    before = len(served.requests)
    assert fetch_quick(remote(served, "plain"), cache) == path
    assert len(served.requests) == before


def test_md5_checksums_work_too(served, cache):
    md5 = "md5:" + hashlib.md5(PAYLOAD).hexdigest()
    assert fetch_quick(remote(served, "plain", checksum=md5), cache).read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_file_and_names_url_expected_and_got(served, cache):
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch_quick(remote(served, "plain", checksum=wrong), cache)
    message = str(info.value)
    assert f"{served.url}/plain/blob.bin" in message
    assert f"expected {'0' * 64}, got {hashlib.sha256(PAYLOAD).hexdigest()}" in message
    assert not cache.exists() or list(cache.iterdir()) == []
    assert len(served.requests) == 1  # wrong bytes are not retried


def test_truncated_downloads_are_retried_then_fail_cleanly(served, cache):
    with pytest.raises(DownloadError, match="IncompleteRead"):
        fetch_quick(remote(served, "truncate"), cache, retries=2)
    assert len(served.requests) == 3  # 1 + 2 retries, each resuming with a Range request
    assert [r for _, r in served.requests[1:]] == [
        f"bytes={len(PAYLOAD) // 2}-",
        f"bytes={3 * len(PAYLOAD) // 4}-",
    ]
    assert not cache.exists() or list(cache.iterdir()) == []


def test_transient_errors_are_retried(served, cache):
    path = fetch_quick(remote(served, "flaky"), cache, retries=1)
    assert path.read_bytes() == PAYLOAD and len(served.requests) == 2


def test_interrupted_download_resumes_from_the_part_file(served, cache):
    cache.mkdir()
    (cache / "blob.bin.part").write_bytes(PAYLOAD[:1000])
    assert fetch_quick(remote(served, "plain"), cache).read_bytes() == PAYLOAD
    assert served.requests == [("/plain/blob.bin", "bytes=1000-")]


def test_server_ignoring_range_restarts_cleanly(served, cache):
    cache.mkdir()
    (cache / "blob.bin.part").write_bytes(b"stale bytes")
    assert fetch_quick(remote(served, "norange"), cache).read_bytes() == PAYLOAD


def test_bad_cached_file_is_downloaded_again(served, cache):
    cache.mkdir()
    (cache / "blob.bin").write_bytes(b"corrupted")
    assert fetch_quick(remote(served, "plain"), cache).read_bytes() == PAYLOAD


def test_mirrors_are_tried_in_order(served, cache):
    missing = RemoteFile(
        "blob.bin",
        (f"{served.url}/plain/nothing-here", f"{served.url}/plain/blob.bin"),
        remote(served).checksum,
    )
    assert fetch_quick(missing, cache).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        fetch_quick(RemoteFile("x.bin", (f"{served.url}/plain/x.bin",), "md5:00"), cache / "other")


@pytest.mark.parametrize("checksum", ["sha1:abc", "deadbeef", "md5:"])
def test_checksum_format_is_validated(checksum):
    with pytest.raises(ValueError, match="must be '<algorithm>:<hex>'"):
        RemoteFile("f", ("http://127.0.0.1/f",), checksum)
