"""The decoded-mesh cache: the OBJ reader's output, parsed once per file content, never trusted when damaged."""
import numpy as np
import pytest

import storage.mesh_cache as mesh_cache
from storage.hashing import ContentHashCache
from storage.meshes import Mesh, read_obj, write_obj
from storage.mesh_cache import MeshCache


@pytest.fixture
def scan(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3))
    f = rng.integers(0, 50, (80, 3))
    path = tmp_path / "raw" / "0001.obj"
    path.parent.mkdir()
    write_obj(path, Mesh(v, f, rng.uniform(size=(60, 2)), rng.integers(0, 60, (80, 3)), material_file="m.mtl"))
    return path


def _equal(a: Mesh, b: Mesh) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("vertices", "faces", "uv", "uv_faces")) \
        and a.material_file == b.material_file and a.vertices.dtype == b.vertices.dtype \
        and a.faces.dtype == b.faces.dtype


def _cache(tmp_path, hash_cache: bool) -> MeshCache:
    """As the sensor-side tools use it (the store's hash cache) or as the stages do (the file hashed directly)."""
    return MeshCache(tmp_path / "cache", ContentHashCache(tmp_path / "hashes.json") if hash_cache else None)


@pytest.mark.parametrize("hash_cache", [True, False])
def test_a_cached_read_equals_the_reader_and_parses_the_file_once(scan, tmp_path, monkeypatch, hash_cache):
    cache = _cache(tmp_path, hash_cache)
    first = cache.read_obj(scan)
    assert _equal(first, read_obj(scan)) and len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_parse(path):
        raise AssertionError("parsed again")

    monkeypatch.setattr(mesh_cache, "read_obj", no_parse)
    again = _cache(tmp_path, hash_cache).read_obj(scan)
    assert _equal(again, first)


@pytest.mark.parametrize("hash_cache", [True, False])
def test_an_edited_scan_is_a_new_entry(scan, tmp_path, hash_cache):
    cache = _cache(tmp_path, hash_cache)
    before = cache.read_obj(scan)
    mesh = read_obj(scan)
    write_obj(scan, Mesh(mesh.vertices + 1.0, mesh.faces, mesh.uv, mesh.uv_faces, material_file="m.mtl"))
    after = cache.read_obj(scan)
    np.testing.assert_allclose(after.vertices, before.vertices + 1.0, atol=1e-6)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncated", "object_array", "out_of_range"])
def test_a_damaged_entry_is_decoded_again_and_replaced(scan, tmp_path, damage):
    cache = _cache(tmp_path, False)
    good = cache.read_obj(scan)
    entry = cache.entry(scan)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "object_array":  # a pickle inside: refused (allow_pickle=False), never run
        with open(entry, "wb") as fh:
            np.savez(fh, vertices=np.array([object()], dtype=object), faces=good.faces, material_file=np.array(""))
    else:
        with open(entry, "wb") as fh:
            np.savez(fh, vertices=good.vertices, faces=good.faces + 1000, material_file=np.array(""))
    assert _equal(cache.read_obj(scan), good)
    assert _equal(mesh_cache._load(entry), good)  # replaced by a good entry
