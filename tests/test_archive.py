"""Tar extraction refuses members that would escape the target directory, writing nothing."""

import pytest

from pipeline.data.archive import UnsafeArchiveError, extract_tar
from tests.data_fixtures import make_tar_with_member


@pytest.mark.parametrize(
    "name, symlink_to, message",
    [
        ("../evil.txt", None, "member '../evil.txt' would be written outside"),
        ("data/../../evil.txt", None, "member 'data/../../evil.txt' would be written outside"),
        ("/tmp/evil.txt", None, "member '/tmp/evil.txt' would be written outside"),
        ("data/link", "../../outside", "link 'data/link' -> '../../outside' points outside"),
        ("data/abs", "/etc/passwd", "link 'data/abs' -> '/etc/passwd' points outside"),
    ],
)
def test_escaping_members_are_refused_and_nothing_is_written(tmp_path, name, symlink_to, message):
    archive = make_tar_with_member(tmp_path / "bad.tar.gz", name, symlink_to=symlink_to)
    dest = tmp_path / "out" / "extracted"
    with pytest.raises(UnsafeArchiveError) as info:
        extract_tar(archive, dest, progress=False)
    assert message in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_safe_archive_extracts_and_replaces_the_target(tmp_path):
    archive = make_tar_with_member(tmp_path / "ok.tar.gz", "data/sub/inner.txt")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale").write_text("old")
    extract_tar(archive, dest, progress=False)
    assert (dest / "data/ok.txt").read_text() == "ok" and (
        dest / "data/sub/inner.txt"
    ).read_text() == "evil"
    assert not (dest / "stale").exists()
    # an internal relative link stays allowed
    linked = make_tar_with_member(tmp_path / "link.tar.gz", "data/alias", symlink_to="ok.txt")
    extract_tar(linked, tmp_path / "linked", progress=False)
    assert (tmp_path / "linked/data/alias").read_text() == "ok"
