import pickle

import numpy as np
import pytest
import scipy.sparse

from model.bodies.legacy_pickle import (UnsafePickleError, chumpy_array, dump_py2_pickle, load_legacy_pickle,
                                        load_object_npy, old_scipy_csc)


def test_python2_chumpy_pickle_needs_the_remapping_loader(tmp_path):
    rng = np.random.default_rng(0)
    shapedirs = rng.normal(size=(7, 3, 4))
    jreg = scipy.sparse.random(5, 7, density=0.4, random_state=1)
    path = tmp_path / "generic_model.pkl"
    dump_py2_pickle({"shapedirs": chumpy_array(shapedirs), "J_regressor": old_scipy_csc(jreg),
                     "kintree_table": np.array([[4294967295, 0], [0, 1]], np.uint32)}, path)
    raw = path.read_bytes()
    assert b"chumpy.ch\nCh" in raw and b"scipy.sparse.csc\ncsc_matrix" in raw and b"numpy.core.multiarray" in raw
    for kwargs in ({}, {"encoding": "latin1"}):  # like the real file, a plain Python-3 load fails
        with pytest.raises((UnicodeDecodeError, ModuleNotFoundError)):
            pickle.loads(raw, **kwargs)
    data = load_legacy_pickle(path)
    np.testing.assert_array_equal(data["shapedirs"], shapedirs)
    np.testing.assert_array_equal(data["J_regressor"].toarray(), jreg.toarray())
    assert data["kintree_table"][0, 0] == 4294967295


def test_unknown_globals_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("echo pwned",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(UnsafePickleError, match="system"):
        load_legacy_pickle(path)


def test_object_npy_with_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    d = {"idx": np.arange(3), "dyn": torch.arange(6).reshape(2, 3), "bary": torch.rand(2, 3, 3)}
    np.save(tmp_path / "e.npy", np.array(d, dtype=object), allow_pickle=True)
    out = load_object_npy(tmp_path / "e.npy")
    np.testing.assert_array_equal(out["dyn"], d["dyn"].numpy())
    np.testing.assert_allclose(out["bary"], d["bary"].numpy())
