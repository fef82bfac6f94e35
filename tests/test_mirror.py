"""Mirror check and build (build is exercised with a local stand-in for the downloader)."""

import io
import json
import pathlib
import tarfile

import numpy as np
import pytest

from course_lib import downloads, errors, mirror, mirror_weights
from course_lib.tools import cli, mirror_build


def test_check_real_mirror(mirror_root):
    result = mirror.check(mirror_root)
    assert result["ok"], mirror.format_check(result)
    assert all(result["resources"].values())


def _tiny_h5(path):
    """Write a small, valid HDF5 file laid out like a Keras weight file; return its bytes."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"Conv1"]
        f.create_group("Conv1").create_dataset("kernel", data=np.arange(2000, dtype="float32"))
    return path.read_bytes()


def _weights_h5(path, key):
    """A Keras HDF5 weights file with the layers and shapes of `key`'s model; its arrays take no space."""
    import h5py

    from course_lib import mirror_weights

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        names = [f"layer_{i}" for i, _ in enumerate(mirror_weights.expected(key))]
        f.attrs["layer_names"] = [n.encode() for n in ["input_1", *names]]
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for name, shapes in zip(names, mirror_weights.expected(key)):
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/w{j}:0".encode() for j in range(len(shapes))]
            for j, shape in enumerate(shapes):
                g.create_dataset(f"{name}/w{j}:0", shape=shape, dtype="float32")  # never written: no space


def _fake_mirror(root):
    """A complete, tiny mirror made at test time: weights files shaped like their models, class index, npz, folders."""
    for key in ("mobilenet_v2@224", "mobilenet@224", "mobilenet_top@224"):
        _weights_h5(root / mirror.RESOURCES[key][0], key)
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (root / mirror.RESOURCES["class_index"][0]).write_text(json.dumps(index))
    for sub in ("flowers/daisy", "pacs/photo/dog"):
        (root / "datasets" / sub).mkdir(parents=True)
        (root / "datasets" / sub / "a.jpg").write_bytes(b"jpeg bytes are not decoded by the check")
    for key, names in mirror.NPZ_KEYS.items():
        path = root / mirror.RESOURCES[key][0]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{n: np.zeros(2, np.uint8) for n in names})
    return root


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_check_fake_mirror_is_ok(tmp_path):
    result = mirror.check(_fake_mirror(tmp_path))
    assert result["ok"], mirror.format_check(result)
    assert set(result["status"].values()) == {"ok"} and result["problems"] == {}


def test_check_reports_truncated_and_garbage_weight_files(tmp_path, capsys):
    root = _fake_mirror(tmp_path)
    v2 = mirror.RESOURCES["mobilenet_v2@224"][0]
    _truncate(root / v2)
    (root / mirror.RESOURCES["mobilenet_top@224"][0]).write_bytes(b"<html>404 Not Found</html>" * 40)
    result = mirror.check(root)
    assert not result["ok"]
    assert result["status"]["mobilenet_v2@224"] == "CORRUPT"
    assert not result["resources"]["mobilenet_v2@224"]
    assert "truncated" in result["problems"]["mobilenet_v2@224"]
    assert "not an HDF5 file" in result["problems"]["mobilenet_top@224"]
    assert result["missing_by_notebook"]["00_setup"] == ["mobilenet_v2@224"]
    text = mirror.format_check(result)
    assert f"[CORRUPT] {v2}  (truncated: " in text
    assert "[ok] keras/models/mobilenet_2_5_224_tf_no_top.h5" in text
    assert "00_setup: corrupt mobilenet_v2@224" in text and "00_setup: ready" not in text
    assert "re-copy the CORRUPT" in text and "course mirror build DEST" in text
    assert cli.main(["mirror", "check", str(root)]) == 1
    assert f"[CORRUPT] {v2}" in capsys.readouterr().out


def test_check_reports_bad_class_index_npz_and_empty_folders(tmp_path):
    root = _fake_mirror(tmp_path)
    (root / mirror.RESOURCES["class_index"][0]).write_text('{"0": ["n01440764", "tench"], "1": [')
    _truncate(root / mirror.RESOURCES["usps"][0], 0.3)
    np.savez(root / mirror.RESOURCES["mnist"][0], x_test=np.zeros(2))
    (root / "datasets/flowers/daisy/a.jpg").unlink()
    (root / "datasets/pacs/photo/horse").mkdir()
    result = mirror.check(root)
    assert result["status"] == {**result["status"], "class_index": "CORRUPT", "usps": "CORRUPT",
                                "mnist": "CORRUPT", "flowers": "EMPTY", "pacs": "EMPTY"}
    assert "JSONDecodeError" in result["problems"]["class_index"]
    assert "lacks the arrays ['y_test']" in result["problems"]["mnist"]
    assert "holds no files" in result["problems"]["flowers"]
    assert "photo/horse" in result["problems"]["pacs"]
    assert not result["ok"] and result["status"]["mobilenet_v2@224"] == "ok"


def test_check_is_fast_on_the_real_mirror(mirror_root):
    import time

    start = time.perf_counter()
    mirror.check(mirror_root)
    assert time.perf_counter() - start < 2


def test_cli_check_of_a_folder_that_does_not_exist_exits_2(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no_such_mirror"
    assert cli.main(["mirror", "check", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "[MISSING]" not in captured.err
    assert f"the folder {missing} does not exist. Received: {missing}." in captured.err
    assert "A mirror is a folder holding keras/models/" in captured.err
    assert "course mirror build DEST" in captured.err and "COURSE_MIRROR" in captured.err
    monkeypatch.setenv("COURSE_MIRROR", str(missing))
    assert cli.main(["mirror", "check"]) == 2
    assert f"Received: COURSE_MIRROR={missing}." in capsys.readouterr().err
    with pytest.raises(errors.MissingResourceError, match="does not exist"):
        mirror.check(missing)


def test_load_with_corrupt_mirror_weights_names_the_file(tmp_path, monkeypatch, isolated_cache):
    from course_lib import backbones

    root = _fake_mirror(tmp_path / "m")
    weights = root / mirror.RESOURCES["mobilenet_v2@224"][0]
    _truncate(weights)
    monkeypatch.setenv("COURSE_MIRROR", str(root))
    with pytest.raises(errors.CorruptResourceError) as info:
        backbones.load("mobilenet_v2", 224)
    text = str(info.value)
    assert isinstance(info.value, errors.MissingResourceError)
    assert str(weights) in text and "truncated" in text
    assert "re-copy it from the mirror source" in text and "course mirror build" in text
    assert "unset COURSE_MIRROR" in text
    assert isinstance(info.value.__cause__, OSError)  # the h5py error stays chained
    (root / mirror.RESOURCES["class_index"][0]).write_text("{not json")
    with pytest.raises(errors.CorruptResourceError, match="imagenet_class_index.json"):
        backbones.decode_predictions(np.zeros((1, 1000)))


def test_check_partial_mirror_names_what_is_missing(tmp_path, capsys):
    _weights_h5(tmp_path / mirror.RESOURCES["mobilenet_v2@224"][0], "mobilenet_v2@224")
    assert cli.main(["mirror", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[ok] keras/models/mobilenet_v2" in out
    assert "[MISSING] datasets/flowers" in out
    assert "00_setup: ready" in out and "02_feature_extraction: missing flowers" in out


def test_every_notebook_need_is_a_known_resource():
    for needs in mirror.NOTEBOOK_NEEDS.values():
        assert set(needs) <= set(mirror.RESOURCES)


def _fake_fetch(sources, served):
    """A fetch that serves `sources` from local files through the real `downloads.fetch` (file:// URLs)."""
    def fetch(url, dest, file_hash, extract=False):
        src = served / pathlib.Path(url).name
        if url in sources:
            src.write_bytes(sources[url])
        elif url.endswith(".json"):
            src.write_text(json.dumps({str(i): [f"n{i}", f"c{i}"] for i in range(1000)}))
        else:  # a weights file shaped like its model
            key = next(k for k, (rel, _) in mirror.RESOURCES.items() if pathlib.Path(rel).name == src.name)
            _weights_h5(src, key)
        return downloads.fetch(src.as_uri(), dest, None, extract=extract)
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
    (tmp_path / "served").mkdir()
    dest = mirror_build.build(tmp_path / "m", ["weights", "flowers", "mnist"],
                              fetch=_fake_fetch(sources, tmp_path / "served"))
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


def test_fetch_checksum_mismatch_keeps_nothing(tmp_path):
    src = tmp_path / "served" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(b"tampered")
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(errors.MissingResourceError, match="Checksum mismatch.*expected 0000.*got [0-9a-f]{64}"):
        downloads.fetch(src.as_uri(), dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_fetch_verifies_sha256_and_md5_and_downloads_once(tmp_path, capsys):
    import hashlib

    src = tmp_path / "f.bin"
    src.write_bytes(b"payload")
    for digest in (hashlib.sha256(b"payload").hexdigest(), hashlib.md5(b"payload").hexdigest()):
        dest = tmp_path / digest[:6] / "f.bin"
        assert downloads.fetch(src.as_uri(), dest, digest).read_bytes() == b"payload"
        src.write_bytes(b"changed at the source")  # a second call reads the verified cached copy
        assert downloads.fetch(src.as_uri(), dest, digest).read_bytes() == b"payload"
        src.write_bytes(b"payload")
    downloads.fetch(src.as_uri(), tmp_path / "unpinned" / "f.bin")
    assert f"its sha256 is {hashlib.sha256(b'payload').hexdigest()}" in capsys.readouterr().out


def test_pacs_online_folder_is_unpacked_checked_and_cached_whole(tmp_path, monkeypatch, isolated_cache):
    import zipfile

    from course_lib import data_sources

    info = data_sources.manifest("pacs")["download"]
    archive = tmp_path / "pacs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for domain, classes in info["expected_counts"].items():
            for cls, n in classes.items():
                for i in range(min(n, 2)):
                    zf.writestr(f"{info['root']}/{domain}/{cls}/{i}.jpg", b"x")
    manifest = json.loads(json.dumps(data_sources.manifest("pacs")))
    manifest["download"]["url"] = archive.as_uri()
    monkeypatch.setattr(data_sources, "manifest", lambda name: manifest)
    with pytest.raises(errors.MissingResourceError, match=r"photo/dog: 2 files, expected 189.*not cached"):
        data_sources.online_folder("pacs")
    assert not (isolated_cache / "datasets" / "pacs").exists()
    manifest["download"]["expected_counts"] = {d: {c: min(n, 2) for c, n in cs.items()}
                                               for d, cs in info["expected_counts"].items()}
    folder = data_sources.online_folder("pacs")
    assert folder == isolated_cache / "datasets" / "pacs"
    assert sorted(p.name for p in folder.iterdir()) == sorted(info["expected_counts"])


def test_usps_libsvm_files_read_as_uint8_digits(tmp_path):
    import bz2

    from course_lib import data_sources

    rows = ["10 " + " ".join(f"{k}:1" for k in range(1, 257)),      # label 10: digit 9, all white
            "1 " + " ".join(f"{k}:-1" for k in range(1, 257))]      # label 1: digit 0, all black
    path = tmp_path / "usps.bz2"
    path.write_bytes(bz2.compress("\n".join(rows).encode()))
    x, y = data_sources.read_libsvm_digits(path)
    assert x.shape == (2, 16, 16) and x.dtype == np.uint8
    assert y.tolist() == [9, 0] and x[0].min() == 255 and x[1].max() == 0


def test_manifests_are_consistent():
    from course_lib import data_sources

    m = data_sources.manifests()
    assert set(m["flowers"]["tfds"]["label_map"].values()) == set(m["flowers"]["classes"])
    assert json.dumps(m)  # serialisable
    for name, info in m.items():  # every download is pinned, or (PACS) checked by its contents
        files = [info["download"]] + ([info["download"]["test"]] if "test" in info["download"] else [])
        for f in files:
            assert f["url"].startswith("http"), name
            pinned = f.get("sha256") or f.get("md5")
            assert pinned or info["download"].get("expected_counts"), name


def test_check_refuses_the_weights_of_another_model(tmp_path, capsys):
    root = _fake_mirror(tmp_path)
    v2, top = (root / mirror.RESOURCES[k][0] for k in ("mobilenet_v2@224", "mobilenet_top@224"))
    _weights_h5(v2, "mobilenet@224")  # MobileNet's weights under MobileNetV2's name
    _weights_h5(top, "mobilenet@224")  # the no-top file under the classifier's name: one layer short
    result = mirror.check(root)
    assert not result["ok"] and result["status"]["mobilenet_v2@224"] == "CORRUPT"
    assert "not the weights of mobilenet_v2: the file has 54 layers with weights, the model 104" in \
        result["problems"]["mobilenet_v2@224"]
    assert "the file has 54 layers with weights, the model 55" in result["problems"]["mobilenet_top@224"]
    assert cli.main(["mirror", "check", str(root)]) == 1
    assert "[CORRUPT] keras/models/mobilenet_v2" in capsys.readouterr().out


def test_the_stored_weight_shapes_are_those_of_the_keras_models():
    from course_lib import mirror_weights

    for key in mirror_weights.WEIGHT_MODELS:
        assert mirror_weights.expected(key) == model_shapes(key), key


def model_shapes(key: str, image_size: int = 224) -> list[list[tuple]]:
    """The weight shapes of each layer with weights of the model a mirror resource is for, from Keras (no download)."""
    import keras

    from course_lib import backbones

    name, top = mirror_weights.WEIGHT_MODELS[key]
    spec = backbones.get(name)
    ctor = getattr(keras.applications, spec.constructor)
    model = ctor(weights=None, include_top=top, input_shape=(image_size, image_size, 3), **dict(spec.kwargs))
    return [[tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights]
