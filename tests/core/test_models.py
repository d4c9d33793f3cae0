"""Models: twins, live switches, residual math, init schemes, seed structures, torchvision parity."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradviz
from gradviz.config import ModelConfig
from gradviz.core.models import (
    ModelError,
    blocks,
    build_model,
    make_switchable,
    set_dropout,
    set_norm,
    set_residual,
)
from gradviz.core.models.switches import supports
from gradviz.core.probes import forward_order

# (config, input shape, outputs): small enough to run on a CPU in well under a second each
CASES = {
    "mlp": (ModelConfig(kind="mlp", depth=4, width=16), (2,), 4),
    "mlp-image": (ModelConfig(kind="mlp", depth=2, width=8), (1, 6, 6), 3),
    "conv": (ModelConfig(kind="conv", depth=1, width=4), (3, 16, 16), 5),
    "resnet18": (ModelConfig(kind="resnet18", norm=True), (1, 32, 32), 10),
    "rgb": (ModelConfig(kind="rgb", dtype="float64"), (3,), 3),
    "lenet": (ModelConfig(kind="lenet", activation="sigmoid"), (1, 28, 28), 10),
}


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _input(shape, model, n=4, seed=1):
    dtype = next(model.parameters()).dtype
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_twins_have_identical_weights(case):
    cfg, shape, n_out = CASES[case]
    plain = build_model(replace(cfg, residual=False), shape, n_out, seed=7)
    residual = build_model(replace(cfg, residual=True), shape, n_out, seed=7)
    assert _same_params(_params(plain), _params(residual))
    assert all(not b.residual for _, b in blocks(plain)) and blocks(plain)
    assert all(b.residual for _, b in blocks(residual))
    other = build_model(cfg, shape, n_out, seed=8)
    assert not _same_params(_params(plain), _params(other))


def test_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_model(CASES["mlp"][0], (2,), 4, seed=0)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("case", ["mlp", "conv", "resnet18", "rgb", "lenet"])
def test_residual_toggle_changes_next_forward_only(case):
    cfg, shape, n_out = CASES[case]
    model = build_model(cfg, shape, n_out, seed=0).eval()
    x = _input(shape, model)
    before = _params(model)
    with torch.no_grad():
        y0 = model(x)
        changed = set_residual(model, True)
        y1 = model(x)
        set_residual(model, False)
        y2 = model(x)
    assert changed == len(blocks(model)) > 0
    assert _same_params(before, _params(model))
    assert torch.equal(y0, y2)
    if case == "lenet":  # documented: LeNet's blocks change shape, so residual does nothing
        assert torch.equal(y0, y1)
    else:
        assert not torch.allclose(y0, y1)


@pytest.mark.parametrize("case", ["mlp", "conv", "resnet18", "lenet"])
@pytest.mark.parametrize("kind", ["batch", "layer", "group"])
def test_norm_toggle_changes_next_forward_only(case, kind):
    cfg, shape, n_out = CASES[case]
    cfg = replace(cfg, norm=False, norm_kind=kind)
    model = build_model(cfg, shape, n_out, seed=0).train()
    x = _input(shape, model)
    before = _params(model)
    with torch.no_grad():
        y0 = model(x)
        assert set_norm(model, True) == len(blocks(model))
        y1 = model(x)
        set_norm(model, False)
        y2 = model(x)
    assert _same_params(before, _params(model))
    assert torch.equal(y0, y2)
    assert not torch.allclose(y0, y1)


def test_norm_kinds_build_the_named_modules():
    cfg, shape, n_out = CASES["mlp"]
    kinds = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "group": nn.GroupNorm}
    for kind, cls in kinds.items():
        m = build_model(replace(cfg, norm_kind=kind), shape, n_out, 0)
        assert isinstance(m.blocks[0].norm, cls)
    conv = build_model(replace(CASES["conv"][0], norm_kind="layer"), (3, 16, 16), 5, 0)
    gn = conv.stages[0][0].bn1
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 1
    conv = build_model(replace(CASES["conv"][0], norm_kind="group", width=12), (3, 16, 16), 5, 0)
    assert conv.stages[0][0].bn1.num_groups == 6  # largest <= 8 dividing 12
    assert conv.stages[1][0].bn1.num_groups == 8  # 24 channels


@pytest.mark.parametrize("case", ["mlp", "conv", "rgb", "lenet"])
def test_dropout_changes_live(case):
    cfg, shape, n_out = CASES[case]
    model = build_model(cfg, shape, n_out, seed=0).train()
    x = _input(shape, model, n=8)
    before = _params(model)
    with torch.no_grad():
        y0 = model(x)
        n = set_dropout(model, 0.5)
        assert n > 0
        assert all(m.p == 0.5 for m in model.modules() if isinstance(m, nn.Dropout))
        y1 = model(x)
        set_dropout(model, 0.0)
        y2 = model(x)
    assert _same_params(before, _params(model))
    assert not torch.allclose(y0, y1)
    assert torch.equal(y0, y2)


def test_dropout_rate_inside_mlp_block_is_the_live_p():
    cfg = ModelConfig(kind="mlp", depth=1, width=2000, activation="sigmoid", dropout=0.0)
    model = build_model(cfg, (2,), 1, 0).train()
    block = model.blocks[0]
    x = torch.randn(4, 2000)
    set_dropout(model, 0.3)
    with torch.no_grad():
        h = block(x)
    # sigmoid is never exactly 0, so zeros are the dropped units
    assert abs((h == 0).float().mean().item() - 0.3) < 0.02
    kept = h[h != 0]
    expected = torch.sigmoid(block.linear(x))[h != 0] / 0.7
    assert torch.allclose(kept, expected, atol=1e-5)


def test_mlp_residual_math_by_hand():
    cfg = ModelConfig(kind="mlp", depth=2, width=3, activation="tanh", residual=True)
    model = build_model(cfg, (2,), 1, seed=3).eval()
    x = torch.randn(5, 2)
    lin = [model.blocks[i].linear for i in range(2)]
    h = F.linear(x, model.input.weight, model.input.bias)
    for layer in lin:
        h = h + torch.tanh(h @ layer.weight.T + layer.bias)
    expected = h @ model.head.weight.T + model.head.bias
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-6)
        set_residual(model, False)
        h = x @ model.input.weight.T + model.input.bias
        for layer in lin:
            h = torch.tanh(h @ layer.weight.T + layer.bias)
        assert torch.allclose(model(x), h @ model.head.weight.T + model.head.bias, atol=1e-6)


def test_mlp_flattens_images_and_names_its_parts():
    cfg, shape, n_out = CASES["mlp-image"]
    model = build_model(cfg, shape, n_out, 0)
    assert model.input.in_features == 36 and model.head.out_features == 3
    assert len(model.blocks) == cfg.depth
    assert model(torch.randn(2, *shape)).shape == (2, 3)


def test_conv_block_math_by_hand():
    cfg = ModelConfig(kind="conv", depth=1, width=4, residual=True, norm=False)
    model = build_model(cfg, (3, 8, 8), 2, 0).eval()
    block = model.stages[1][0]  # 4 -> 8 channels, stride 2: projection shortcut
    x = torch.randn(2, 4, 8, 8)
    c1, c2, sc = block.conv1, block.conv2, block.shortcut[0]
    y = F.conv2d(
        F.relu(F.conv2d(x, c1.weight, c1.bias, stride=2, padding=1)), c2.weight, c2.bias, padding=1
    )
    s = F.conv2d(x, sc.weight, sc.bias, stride=2)
    with torch.no_grad():
        assert torch.allclose(block(x), F.relu(y + s), atol=1e-6)
        block.residual = False
        assert torch.allclose(block(x), F.relu(y), atol=1e-6)
    # 4 stages, channels w..8w, stride 2 from stage 2
    assert [s[0].conv1.out_channels for s in model.stages] == [4, 8, 16, 32]
    assert [s[0].conv1.stride[0] for s in model.stages] == [1, 2, 2, 2]


def test_init_schemes():
    base = ModelConfig(kind="mlp", depth=2, width=400, activation="relu")
    zeros = build_model(replace(base, init="zeros"), (300,), 2, 0)
    for m in zeros.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.weight) == 0 and torch.count_nonzero(m.bias) == 0
    # zeros cannot break symmetry: every hidden unit's gradient row is the same
    x = torch.randn(16, 300)
    zeros(x).pow(2).sum().backward()
    g = zeros.head.weight.grad
    assert torch.allclose(g, g[:, :1].expand_as(g))

    def std(scheme):
        m = build_model(replace(base, init=scheme), (300,), 2, 0)
        w = m.blocks[0].linear.weight
        assert torch.count_nonzero(m.blocks[0].linear.bias) == 0
        return w.std().item(), w.mean().item()

    he_std, he_mean = std("he")
    assert abs(he_std - math.sqrt(2 / 400)) < 0.03 * math.sqrt(2 / 400) and abs(he_mean) < 0.003
    xa_std, _ = std("xavier")
    assert abs(xa_std - math.sqrt(2 / 800)) < 0.03 * math.sqrt(2 / 800)
    n_std, _ = std("normal")
    assert abs(n_std - 1.0) < 0.03
    default = build_model(base, (300,), 2, 0).blocks[0].linear
    bound = 1 / math.sqrt(400)  # PyTorch's kaiming_uniform(a=sqrt 5) for Linear
    assert default.weight.abs().max() <= bound and default.weight.std() > 0.5 * bound / math.sqrt(3)


def test_rgb_net_matches_seed_000():
    cfg = ModelConfig(kind="rgb", dtype="float64", residual=True)
    model = build_model(cfg, (3,), 3, 0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    assert all(m.in_features == 3 and m.out_features == 3 for m in linears)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert len(blocks(model)) == 3 and model.activation == "tanh"
    x = torch.rand(10, 3, dtype=torch.float64) * 2 - 1
    l11, l12, l21, l22, l31, l32 = linears

    def seed_forward(x, residual):
        x1 = l12(torch.tanh(l11(x))) + (x if residual else 0)
        x1 = torch.tanh(x1)
        x2 = l22(torch.tanh(l21(x1))) + (x1 if residual else 0)
        x2 = torch.tanh(x2)
        return l32(torch.tanh(l31(x2))) + (x2 if residual else 0)  # no tanh after the last

    with torch.no_grad():
        assert torch.allclose(model(x), seed_forward(x, True), atol=1e-12)
        set_residual(model, False)
        assert torch.allclose(model(x), seed_forward(x, False), atol=1e-12)
    with pytest.raises(ModelError):
        build_model(cfg, (2,), 3, 0)


def test_lenet_structure_and_flatten_size():
    cfg = ModelConfig(kind="lenet", activation="sigmoid", norm=True)
    model = build_model(cfg, (1, 28, 28), 10, 0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5))]
    assert [(f.in_features, f.out_features) for f in fcs] == [(400, 120), (120, 84), (84, 10)]
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(bns) == 4 and model.activation == "sigmoid"
    other = build_model(cfg, (3, 32, 32), 2, 0)
    assert other.classifier[0].linear.in_features == 16 * 6 * 6
    assert other(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_dtype_and_activation_attribute():
    for case, (cfg, shape, n_out) in CASES.items():
        model = build_model(cfg, shape, n_out, 0)
        want = {"conv": "relu", "resnet18": "relu", "rgb": "tanh"}.get(
            case.split("-")[0], cfg.activation
        )
        assert model.activation == want
        want_dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        assert all(p.dtype == want_dtype for p in model.parameters())
    m = build_model(replace(CASES["mlp"][0], dtype="float64"), (2,), 4, 0)
    assert all(p.dtype == torch.float64 for p in m.parameters())


def test_unknown_kind_and_bad_shapes_raise_model_error():
    with pytest.raises(ModelError) as err:
        build_model(ModelConfig(kind="transformer"), (2,), 2, 0)
    msg = str(err.value)
    assert "\n" not in msg and "mlp" in msg and "resnet18" in msg and "torchvision:<name>" in msg
    assert isinstance(err.value, ValueError)
    with pytest.raises(ModelError):
        build_model(ModelConfig(kind="conv"), (2,), 2, 0)


def test_resnet18_matches_torchvision():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    ref = tvm.resnet18(weights=None, num_classes=10)
    # non-trivial running statistics, so eval mode really exercises every BatchNorm
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    ours = build_model(ModelConfig(kind="resnet18", residual=True, norm=True), (3, 64, 64), 10, 0)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
        set_residual(ours, False)
        assert not torch.allclose(ours(x), ref(x), atol=1e-3)
    one = build_model(ModelConfig(kind="resnet18"), (1, 28, 28), 10, 0)
    assert one.conv1.in_channels == 1 and one(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_make_switchable_on_torchvision_resnet18():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y0 = model(x)
        assert make_switchable(model) == 8
        assert make_switchable(model) == 0  # already patched
        assert len(blocks(model)) == 8
        assert torch.allclose(model(x), y0, atol=1e-6)
        assert set_residual(model, False) == 8
        assert not torch.allclose(model(x), y0, atol=1e-3)
        set_residual(model, True)
        assert torch.allclose(model(x), y0, atol=1e-6)
    fresh = tvm.resnet18(weights=None, num_classes=10).eval()  # the class itself is untouched
    assert "forward" not in vars(fresh.layer1[0])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("name", "skips"), [("mobilenet_v2", 10), ("mobilenet_v3_small", 6), ("efficientnet_b0", 9)])
def test_make_switchable_reaches_inverted_residuals(name, skips):
    """`model.residual` changed nothing in MobileNets and EfficientNets (the twins were the same
    network, said in a note): their inverted residuals with a skip path switch now. Each switched
    block gives its own branch alone with the skip off (`x + f(x)` against `f(x)`, computed here from
    the block's parts), the model equals torchvision's own with it on, and the strided blocks, which
    have no skip, are left as they are."""
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = getattr(tvm, name)(weights=None, num_classes=4).eval()
    reference = copy.deepcopy(model)
    with_skip = [m for m in model.modules() if getattr(m, "use_res_connect", False)]
    assert len(with_skip) == skips
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert make_switchable(model) == skips and make_switchable(model) == 0
        assert [m for _, m in blocks(model)] == with_skip
        assert rel(model(x), reference(x)) < 1e-5  # its logits are tiny at init: compared relatively
        assert set_residual(model, False) == skips
        assert rel(model(x), reference(x)) > 0.1
        block = with_skip[0]
        branch = block.conv if hasattr(block, "conv") else block.block  # MobileNet v2: conv; others: block
        seen = []
        hook = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
        model(x)
        hook.remove()
        h = seen[0]
        assert rel(block(h), branch(h)) < 1e-6
        set_residual(model, True)
        assert rel(block(h), h + branch(h)) < 1e-6 and rel(block(h), branch(h)) > 0.1
        assert rel(model(x), reference(x)) < 1e-5
    assert supports(model)["residual"]
    assert copy.deepcopy(model)(x).shape == (2, 4)  # a copy's forward is bound to the copy


def _tiny_torchvision(family: str):
    """A small instance of a torchvision family (the real classes, a few channels and blocks),
    with an input for it."""
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    if family == "convnext":
        from torchvision.models.convnext import CNBlockConfig

        model = tvm.convnext.ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)], num_classes=3)
        for m in model.modules():  # torchvision's 1e-6 layer scale leaves the branch too small to compare
            if hasattr(m, "layer_scale"):
                m.layer_scale.data.fill_(0.5)
        return model, torch.randn(2, 3, 32, 32)
    if family in ("swin", "swin_v2"):
        from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformerBlockV2

        extra = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if family == "swin_v2" else {}
        model = tvm.swin_transformer.SwinTransformer([4, 4], 8, [2, 1], [1, 2], [2, 2], num_classes=3, **extra)
        return model, torch.randn(2, 3, 16, 16)
    if family == "vit":
        model = tvm.vision_transformer.VisionTransformer(16, 8, 2, 2, 8, 16, num_classes=3)
        nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: no output to compare
        return model, torch.randn(2, 3, 16, 16)
    if family == "mnasnet":
        return tvm.mnasnet.MNASNet(0.25, num_classes=3), torch.randn(2, 3, 32, 32)
    if family == "maxvit":
        model = tvm.maxvit.MaxVit(
            input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16], block_layers=[1, 1],
            head_dim=4, stochastic_depth_prob=0.2, num_classes=3,
        )
        return model, torch.randn(2, 3, 32, 32)
    from torchvision.models.regnet import BlockParams

    model = tvm.regnet.RegNet(BlockParams.from_init_params(depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=8), num_classes=3)
    return model, torch.randn(2, 3, 32, 32)


def _branch(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A block's output with its skip paths removed, composed here from its parts."""
    name = type(block).__name__
    if name == "CNBlock":
        return block.layer_scale * block.block(h)
    if name == "EncoderBlock":
        a = block.ln_1(h)
        a = block.dropout(block.self_attention(a, a, a, need_weights=False)[0])
        return block.mlp(block.ln_2(a))
    if name == "SwinTransformerBlockV2":
        return block.norm2(block.mlp(block.norm1(block.attn(h))))
    if name == "SwinTransformerBlock":
        return block.mlp(block.norm2(block.attn(block.norm1(h))))
    if name in ("_InvertedResidual", "MBConv"):  # MNASNet's; MaxViT's
        return block.layers(h)
    if name == "PartitionAttentionLayer":
        gh, gw = block.grid_size[0] // block.p, block.grid_size[1] // block.p
        a = block.mlp_layer(block.attn_layer(block.partition_swap(block.partition_op(h, block.p))))
        return block.departition_op(block.departition_swap(a), block.p, gh, gw)
    assert name == "ResBottleneckBlock"
    return block.activation(block.f(h))


@pytest.mark.parametrize(
    ("family", "count"), [("convnext", 3), ("swin", 3), ("swin_v2", 3), ("vit", 2), ("regnet", 3), ("mnasnet", 11), ("maxvit", 6)]
)
def test_make_switchable_reaches_transformer_convnext_and_regnet_blocks(family, count):
    """ConvNeXt, ViT, Swin, RegNet, MNASNet and MaxViT kept their own skip paths in the "plain"
    twin (the two twins were one network, said in a note). Their residual blocks switch now: with the skip on a block
    gives what torchvision's own forward gives; with it off, its branches alone (composed here from
    the block's parts); the layers keep their forward order."""
    model, x = _tiny_torchvision(family)
    model.eval()
    reference = copy.deepcopy(model)
    order = [n for n, _ in forward_order(reference, x)]
    with torch.no_grad():
        assert make_switchable(model) == count and make_switchable(model) == 0
        assert len(blocks(model)) == count
        assert rel(model(x), reference(x)) < 1e-6
        assert [n for n, _ in forward_order(model, x)] == order
        block = blocks(model)[-1][1]
        seen = []
        hook = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
        model(x)
        hook.remove()
        h = seen[0]
        own = type(block).forward(block, h)  # torchvision's forward, skip paths and all
        assert rel(block(h), own) < 1e-6
        assert set_residual(model, False) == count
        assert rel(block(h), _branch(block, h)) < 1e-6 and rel(own, _branch(block, h)) > 0.05
        assert rel(model(x), reference(x)) > 0.05
    assert supports(model)["residual"]
    depth = getattr(block, "stochastic_depth", None) or getattr(block, "stochastic_dropout", None)  # MaxViT's name
    if family == "maxvit":
        assert hasattr(depth, "p")  # the last block's is a real StochasticDepth: the part below runs
    if hasattr(depth, "p"):
        # training mode, every branch dropped: with the skip path the block is the identity; without
        # it stochastic depth does not apply (it zeroed those samples: a plain Swin's gradients overflowed)
        block.train()
        depth.p = 1.0
        with torch.no_grad():
            assert rel(block(h), _branch(block, h)) < 1e-6
            set_residual(model, True)
            assert rel(block(h), h) < 1e-6


def test_torchvision_kind_builds_switchable_twins():
    pytest.importorskip("torchvision")
    cfg = ModelConfig(kind="torchvision:resnet18", residual=False)
    plain = build_model(cfg, (1, 32, 32), 10, 5)
    residual = build_model(replace(cfg, residual=True), (1, 32, 32), 10, 5)
    assert _same_params(_params(plain), _params(residual))
    assert plain.conv1.in_channels == 1 and plain.activation == "relu"
    assert len(blocks(plain)) == 8 and not any(b.residual for _, b in blocks(plain))
    plain.eval()
    residual.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(x), residual(x), atol=1e-4)
        set_residual(plain, True)
        assert torch.allclose(plain(x), residual(x), atol=1e-6)
    with pytest.raises(ModelError):
        build_model(ModelConfig(kind="torchvision:no_such_net"), (3, 32, 32), 10, 0)


def test_without_torchvision():
    """Built-in models build without torchvision; torchvision kinds say why they cannot."""
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "from gradviz.config import ModelConfig\n"
        "from gradviz.core.models import build_model, ModelError, make_switchable\n"
        "m = build_model(ModelConfig(kind='resnet18'), (3, 32, 32), 10, 0)\n"
        "assert make_switchable(m) == 0\n"
        "try:\n"
        "    build_model(ModelConfig(kind='torchvision:resnet34'), (3, 32, 32), 10, 0)\n"
        "except ModelError as e:\n"
        "    print(e)\n"
    )
    root = str(Path(gradviz.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root, env=env
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("torchvision is not available (")
    assert line.endswith("built-in models: mlp, conv, resnet18, rgb, lenet")


@pytest.mark.parametrize("case", ["mlp", "conv", "resnet18", "rgb", "lenet"])
def test_kind_fields_name_exactly_the_settings_a_kind_is_built_from(case):
    """The GUI shows depth, width and activation only for the kinds that use them: each listed
    field changes the built model, and each unlisted one changes nothing."""
    from gradviz.config import kind_fields

    cfg, shape, n_out = CASES[case]

    def signature(c):
        m = build_model(c, shape, n_out, seed=0)
        acts = sorted({type(x).__name__ for x in m.modules() if isinstance(x, nn.Tanh | nn.Sigmoid | nn.ReLU)})
        return sum(p.numel() for p in m.parameters()), len(list(m.modules())), m.activation, acts

    base = signature(cfg)
    other_act = "relu" if cfg.activation != "relu" else "tanh"
    for field, value in (("depth", cfg.depth + 1), ("width", cfg.width * 2), ("activation", other_act)):
        changed = signature(replace(cfg, **{field: value})) != base
        assert changed == (field in kind_fields(cfg.kind)), (case, field)


def test_torchvision_transformers_are_built_for_the_datas_image_size():
    """vit_b_16 was built for 224x224 and its first batch of 64x64 images failed ("Wrong image
    height! Expected 224 but got 64!"): ViT and MaxViT now take the data's size, and a size the
    architecture cannot take says which size it was built for and how to change it."""
    pytest.importorskip("torchvision")
    cfg = ModelConfig(kind="torchvision:vit_b_16", residual=False)
    model = build_model(cfg, (1, 32, 32), 3, 0)
    assert model.image_size == 32
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    assert len(blocks(model)) == 12 and not any(b.residual for _, b in blocks(model))
    with pytest.raises(ModelError) as err:
        build_model(ModelConfig(kind="torchvision:maxvit_t"), (3, 64, 64), 3, 0)
    msg = str(err.value)
    assert "\n" not in msg and "not divisible by partition size" in msg and "built for the data's 64x64 images" in msg and "data.resize=N" in msg
