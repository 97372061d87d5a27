import os

import numpy as np
import pytest
import torch

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Caches (e.g. the InterHand2.6M loader's) go to a temporary folder, never ~/.cache."""
    os.environ["IHMR_CACHE"] = str(tmp_path_factory.mktemp("ihmr_cache"))


@pytest.fixture(scope="session")
def open_right():
    import ihmr

    return ihmr.load_hand_model("open", "right", dtype=torch.float64)


@pytest.fixture(scope="session")
def two_hands64():
    import ihmr

    return ihmr.TwoHands("open", dtype=torch.float64)


@pytest.fixture(scope="session")
def synth12(two_hands64):
    """12 synthetic pairs (seed 3): ground truth in contact, a colliding simulated stage I."""
    from ihmr.data.synthetic import make_synthetic

    return make_synthetic(12, seed=3, hands=two_hands64, progress=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
