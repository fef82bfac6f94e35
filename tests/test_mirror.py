"""Mirror check and build (build is exercised with a local stand-in for the downloader)."""

import io
import json
import tarfile

import numpy as np
import pytest

from course_lib import cli, errors, mirror, mirror_build


def test_check_real_mirror(mirror_root):
    result = mirror.check(mirror_root)
    assert result["ok"], mirror.format_check(result)
    assert all(result["resources"].values())


def test_check_partial_mirror_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / mirror.RESOURCES["mobilenet_v2@224"][0]).write_bytes(b"x")
    assert cli.main(["mirror", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[ok] keras/models/mobilenet_v2" in out
    assert "[MISSING] datasets/flowers" in out
    assert "00_setup: ready" in out and "02_feature_extraction: missing flowers" in out


def test_every_notebook_need_is_a_known_resource():
    for needs in mirror.NOTEBOOK_NEEDS.values():
        assert set(needs) <= set(mirror.RESOURCES)


def _fake_fetch(sources):
    def fetch(url, dest, sha):
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(sources[url] if url in sources else b"weights:" + url.encode())
        return dest
    return fetch


def _flowers_tgz():
    from PIL import Image

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for folder in ["daisy", "dandelion", "roses", "sunflowers", "tulips"]:
            img = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 10, 10)).save(img, format="JPEG")
            info = tarfile.TarInfo(f"flower_photos/{folder}/a.jpg")
            info.size = len(img.getvalue())
            tar.addfile(info, io.BytesIO(img.getvalue()))
    return buf.getvalue()


def _mnist_npz():
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.ones((3, 28, 28), np.uint8), y_test=np.arange(3, dtype=np.uint8))
    return buf.getvalue()


def test_build_lays_out_a_mirror_that_check_accepts_for_its_parts(tmp_path):
    from course_lib import data_sources

    sources = {data_sources.manifest("flowers")["download"]["url"]: _flowers_tgz(),
               data_sources.manifest("mnist")["download"]["url"]: _mnist_npz()}
    dest = mirror_build.build(tmp_path / "m", ["weights", "flowers", "mnist"], fetch=_fake_fetch(sources))
    res = mirror.check(dest)
    assert res["resources"]["mobilenet_v2@224"] and res["resources"]["class_index"]
    assert sorted(p.name for p in (dest / "datasets/flowers").iterdir()) == \
        ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    with np.load(dest / "datasets/digits/mnist_test.npz") as f:
        assert f["x_test"].shape == (3, 28, 28)
    assert not res["resources"]["pacs"]
    assert res["missing_by_notebook"]["02_feature_extraction"] == []


def test_build_rejects_unknown_parts(tmp_path):
    with pytest.raises(ValueError, match=r"Received: \['cifar'\]"):
        mirror_build.build(tmp_path, ["cifar"])


def test_fetch_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    import urllib.request

    def fake_retrieve(url, filename):
        open(filename, "wb").write(b"tampered")

    monkeypatch.setattr(urllib.request, "urlretrieve", fake_retrieve)
    dest = tmp_path / "f.bin"
    with pytest.raises(errors.MissingResourceError, match="Checksum mismatch"):
        mirror.fetch("http://example.invalid/f.bin", dest, "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_manifests_are_consistent():
    from course_lib import data_sources

    m = data_sources.manifests()
    assert set(m["flowers"]["tfds"]["label_map"].values()) == set(m["flowers"]["classes"])
    assert json.dumps(m)  # serialisable
    for name, info in m.items():
        assert info["download"]["url"].startswith("http"), name
        assert "sha256" in info["download"], name
