"""The real download path, exercised against local `file://` archives and checksum files."""

import hashlib
import stat
import zipfile

import pytest

from linklm import MovieLensManager, UserError
from linklm.data.download import fetch_grouplens, safe_extract

from synthetic import write_layout, zip_folder


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A GroupLens-shaped folder served over file://, holding ml-32m.zip and its .md5."""
    site = tmp_path / "site"
    site.mkdir()
    syn = write_layout(tmp_path / "src" / "ml-32m", "csv")
    archive = zip_folder(syn.folder, site / "ml-32m.zip")
    (site / "ml-32m.zip.md5").write_text(hashlib.md5(archive.read_bytes()).hexdigest() + "  ml-32m.zip\n")
    monkeypatch.setenv("LINKLM_GROUPLENS_URL", site.as_uri())
    return site, syn


def test_download_verifies_and_loads(mirror):
    site, syn = mirror
    ml = MovieLensManager("ml-32m", cache_dir="cache")
    assert ml.summary()["ratings"] == syn.ratings
    assert ml.summary()["users"] == syn.users


def test_checksum_mismatch_is_refused(mirror, tmp_path):
    site, _ = mirror
    (site / "ml-32m.zip.md5").write_text("0" * 32 + "  ml-32m.zip\n")
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch_grouplens("ml-32m", tmp_path / "dl")
    assert not (tmp_path / "dl" / "ml-32m.zip").exists(), "a bad download is not kept"


def test_network_failure_tells_how_to_pass_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKLM_GROUPLENS_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(UserError, match=r"--path"):
        MovieLensManager("ml-32m", cache_dir="cache")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        MovieLensManager("ml-7b", cache_dir="cache")


@pytest.mark.parametrize(
    "name,match",
    [("/etc/evil", "absolute"), ("../evil", r"'\.\.'"), ("a/../../evil", r"'\.\.'")],
)
def test_extraction_refuses_escaping_members(tmp_path, name, match):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "evil")
    with pytest.raises(UserError, match=match):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil").exists()


def test_extraction_refuses_links(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("data/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")
