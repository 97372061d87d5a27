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
    """12 synthetic pairs (seed 3): ground truth in contact, a colliding simulated stage I (one-sided)."""
    from ihmr.data.synthetic import make_synthetic

    return make_synthetic(12, seed=3, hands=two_hands64, progress=False, mix="one-sided")


@pytest.fixture(scope="session")
def synth12_two(two_hands64):
    """The same 12 pairs with the two-sided simulated stage I (half into, half away)."""
    from ihmr.data.synthetic import make_synthetic

    return make_synthetic(12, seed=3, hands=two_hands64, progress=False)


@pytest.fixture(scope="session")
def eval_setup(tmp_path_factory):
    """(data folder, checkpoint path) for ``ihmr eval`` tests: 6 synthetic test images at 64 px
    (seed 1) and an untrained small stage-I network."""
    from ihmr.data.synth import SynthConfig, generate
    from ihmr.stage1.weights import Stage1Arch, save_stage1

    root = tmp_path_factory.mktemp("eval")
    data = root / "synth"
    generate(SynthConfig(out=data, n=6, seed=1, size=64, split="test", progress=False))
    arch = Stage1Arch(backbone="resnet18", heatmap_size=8, depth_bins=8, deconv_channels=32, num_deconv=1, input_size=64)
    torch.manual_seed(0)
    ckpt = save_stage1(root / "stage1.pt", arch.build(), arch, info={"note": "untrained, for tests"})
    return data, ckpt


@pytest.fixture
def rng():
    return np.random.default_rng(0)
