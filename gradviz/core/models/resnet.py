"""ResNet-18 with a model-wide residual switch, and switchable torchvision ResNets.

`ResNet18` has exactly torchvision's module names and state_dict keys (conv1, bn1, relu, maxpool,
layer1..layer4 of two BasicBlocks each with conv1, bn1, relu, conv2, bn2, downsample.0/.1, avgpool,
fc), so torchvision's weights load into it; it never imports torchvision. With the skip off the net is
the plain 18-layer stack of seed 004 (`relu(Y)` instead of `relu(Y + shortcut(X))`). `norm_on`
toggles each block's bn1, bn2 and downsample norm; the stem's bn1 is always on. To keep torchvision's
module names the blocks hold no Dropout, so `set_dropout` finds nothing to change in this model.

`make_switchable` patches torchvision BasicBlock/Bottleneck instances, MobileNet / EfficientNet
inverted residuals that have a skip path, and the residual blocks of ConvNeXt, ViT, Swin and RegNet,
in place so that `set_residual` reaches them too (used for `torchvision:<name>` models and by
`gradviz.watch`).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from .switches import SwitchableBlock


class ModelError(ValueError):
    """A model cannot be built as asked; the message is one line."""


class BasicBlock(SwitchableBlock):
    def __init__(
        self, inplanes: int, planes: int, stride: int, residual: bool, norm_on: bool
    ) -> None:
        super().__init__(residual=residual, norm_on=norm_on)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or inplanes != planes:
            self.downsample: nn.Sequential | None = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.downsample = None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.norm_on:
            out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        if self.norm_on:
            out = self.bn2(out)
        if self.residual:
            if self.downsample is None:
                identity = x
            else:
                identity = self.downsample[0](x)
                if self.norm_on:
                    identity = self.downsample[1](identity)
            out = out + identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, in_channels: int, n_outputs: int, residual: bool, norm_on: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                BasicBlock(inplanes, planes, stride, residual, norm_on),
                BasicBlock(planes, planes, 1, residual, norm_on),
            )
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, n_outputs)
        # torchvision's initialisation, so "default" means what it means for torchvision's resnet18
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet18(cfg, input_shape: tuple[int, ...], n_outputs: int) -> ResNet18:
    return ResNet18(input_shape[0], n_outputs, residual=cfg.residual, norm_on=cfg.norm)


# --- torchvision models ---------------------------------------------------------------------------


def _basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision BasicBlock.forward with the identity added only while `self.residual`."""
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    if self.residual:
        identity = x if self.downsample is None else self.downsample(x)
        out = out + identity
    return self.relu(out)


def _bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision Bottleneck.forward with the identity added only while `self.residual`."""
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.residual:
        identity = x if self.downsample is None else self.downsample(x)
        out = out + identity
    return self.relu(out)


def _flagged_forward(self, x: torch.Tensor) -> torch.Tensor:
    """An inverted residual's own forward (MobileNet v2/v3, EfficientNet, MNASNet), which adds the
    input while its flag (`use_res_connect`, MNASNet's `apply_residual`) is set: the switch sets
    that flag before each call."""
    setattr(self, self._gradviz_flag, self.residual)
    return self._gradviz_own_forward(x)


# Stochastic depth drops a block's branch for some samples of a batch, keeping the skip path: the
# block becomes the identity for them. With the skip path off it would zero those samples instead
# (a plain swin_t's gradients overflowed at its first step; a LayerNorm fed a zeroed sample scales
# its gradient by 1/sqrt(eps), 316, at each drop), so it applies only while `residual`, as
# torchvision's own MBConv does (its stochastic depth sits inside `use_res_connect`).


def _convnext_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision ConvNeXt CNBlock.forward with the input (and stochastic depth) only while
    `self.residual`."""
    out = self.layer_scale * self.block(x)
    return self.stochastic_depth(out) + x if self.residual else out


def _vit_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision ViT EncoderBlock.forward with both of its skip paths only while `self.residual`."""
    h = self.ln_1(x)
    h, _ = self.self_attention(h, h, h, need_weights=False)
    h = self.dropout(h)
    if self.residual:
        h = h + x
    out = self.mlp(self.ln_2(h))
    return h + out if self.residual else out


def _swin_branches(self, x: torch.Tensor, norm_after: bool) -> torch.Tensor:
    """torchvision's Swin block: attention then MLP, each normalised before its branch (v1) or
    after it (v2), each added to its input (after stochastic depth) only while `self.residual`."""
    for norm, branch in ((self.norm1, self.attn), (self.norm2, self.mlp)):
        y = norm(branch(x)) if norm_after else branch(norm(x))
        x = x + self.stochastic_depth(y) if self.residual else y
    return x


def _swin_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _swin_branches(self, x, norm_after=False)


def _swin_v2_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _swin_branches(self, x, norm_after=True)


def _regnet_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision RegNet ResBottleneckBlock.forward with the shortcut (identity or projection)
    only while `self.residual`; the projection runs first, as there, so layers keep their order."""
    identity = (x if self.proj is None else self.proj(x)) if self.residual else None
    out = self.f(x)
    return self.activation(out if identity is None else identity + out)


def _maxvit_mbconv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision MaxViT MBConv.forward with the shortcut (identity or pooled projection) and
    stochastic depth only while `self.residual`; the projection runs first, as there."""
    res = self.proj(x) if self.residual else None
    out = self.layers(x)
    return out if res is None else res + self.stochastic_depth(out)


def _maxvit_partition_forward(self, x: torch.Tensor) -> torch.Tensor:
    """torchvision MaxViT PartitionAttentionLayer.forward (window or grid attention, then the MLP)
    with both skip paths, and stochastic depth, only while `self.residual`."""
    gh, gw = self.grid_size[0] // self.p, self.grid_size[1] // self.p
    torch._assert(self.grid_size[0] % self.p == 0 and self.grid_size[1] % self.p == 0, "grid size must be divisible by the partition size")
    x = self.partition_swap(self.partition_op(x, self.p))
    for branch in (self.attn_layer, self.mlp_layer):
        y = branch(x)
        x = x + self.stochastic_dropout(y) if self.residual else y
    return self.departition_op(self.departition_swap(x), self.p, gh, gw)


def _skip_forwards() -> list[tuple[type, object]]:
    """(torchvision block class, its forward with a switchable skip path), subclasses first."""
    found = []
    for module, name, forward in (
        ("swin_transformer", "SwinTransformerBlockV2", _swin_v2_forward),  # a subclass of the next
        ("swin_transformer", "SwinTransformerBlock", _swin_forward),
        ("convnext", "CNBlock", _convnext_forward),
        ("vision_transformer", "EncoderBlock", _vit_forward),
        ("regnet", "ResBottleneckBlock", _regnet_forward),
        ("maxvit", "MBConv", _maxvit_mbconv_forward),  # not efficientnet's MBConv: that one is flagged
        ("maxvit", "PartitionAttentionLayer", _maxvit_partition_forward),
    ):
        try:
            cls = getattr(__import__(f"torchvision.models.{module}", fromlist=[name]), name)
        except Exception:  # noqa: BLE001 - an older torchvision without the family
            continue
        found.append((cls, forward))
    return found


def _inverted_residual_types() -> dict[type, str]:
    """torchvision's blocks whose skip path is a flag set at build where the shape allows one
    (stride 1, as many channels out as in): block class -> the flag's name."""
    found = {}
    for module, names, flag in (
        ("mobilenetv2", ("InvertedResidual",), "use_res_connect"),
        ("mobilenetv3", ("InvertedResidual",), "use_res_connect"),
        ("efficientnet", ("MBConv", "FusedMBConv"), "use_res_connect"),
        ("mnasnet", ("_InvertedResidual",), "apply_residual"),
    ):
        try:
            mod = __import__(f"torchvision.models.{module}", fromlist=list(names))
        except Exception:  # noqa: BLE001 - an older torchvision without the family
            continue
        found.update({getattr(mod, n): flag for n in names if hasattr(mod, n)})
    return found


def make_switchable(model: nn.Module, residual: bool = True) -> int:
    """Make every torchvision residual block of `model` a switchable block: BasicBlock, Bottleneck,
    the inverted residuals of MobileNet v2/v3, EfficientNet and MNASNet that have a skip path,
    ConvNeXt's CNBlock, the encoder blocks of ViT and Swin (v1 and v2; both skip paths of each),
    RegNet's ResBottleneckBlock, and MaxViT's MBConv and attention layers (both skip paths).

    Each instance gets `gradviz_block = True`, `residual` and a forward that skips the identity while
    `residual` is False (a per-instance bound method; the classes stay untouched). Blocks patched
    before are left alone. Returns how many blocks this call patched; 0 when torchvision is absent
    (then the model cannot hold torchvision blocks).
    """
    try:
        from torchvision.models.resnet import BasicBlock as TvBasic
        from torchvision.models.resnet import Bottleneck as TvBottleneck
    except Exception:  # noqa: BLE001 - any import failure means no torchvision blocks
        return 0
    inverted = _inverted_residual_types()
    others = _skip_forwards()
    patched = 0
    for m in model.modules():
        if getattr(m, "gradviz_block", False):
            continue
        if isinstance(m, TvBasic):
            forward = _basic_forward
        elif isinstance(m, TvBottleneck):
            forward = _bottleneck_forward
        elif (flag := next((f for cls, f in inverted.items() if isinstance(m, cls)), None)) is not None:
            if not getattr(m, flag, False):
                continue  # a strided or widening one has no skip path to switch: it stays as it is
            m._gradviz_flag = flag
            m._gradviz_own_forward = types.MethodType(type(m).forward, m)
            forward = _flagged_forward
        else:
            forward = next((f for cls, f in others if isinstance(m, cls)), None)
            if forward is None:
                continue
        m.gradviz_block = True
        m.residual = bool(residual)
        m.forward = types.MethodType(forward, m)
        patched += 1
    return patched


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for one that takes `in_channels` when it expects another count."""
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.in_channels == in_channels:
            return
        new = nn.Conv2d(
            in_channels,
            m.out_channels,
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
        return


def _image_size_args(name: str, input_shape: tuple[int, ...]) -> dict:
    """The builder arguments that fix an input size (ViT's position embeddings, MaxViT's
    partitions), set to the data's: without them torchvision builds for 224x224 and the first
    batch of 64x64 images fails ("Wrong image height! Expected 224 but got 64!")."""
    if len(input_shape) != 3:
        return {}
    h, w = input_shape[1:]
    if name.startswith("vit_") and h == w:
        return {"image_size": h}
    if name.startswith("maxvit"):
        return {"input_size": (h, w)}
    return {}


def build_torchvision(name: str, cfg, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    builtin = "built-in models: mlp, conv, resnet18, rgb, lenet"
    try:
        import torchvision.models as tvm
    except Exception as exc:  # noqa: BLE001 - report any import failure in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"torchvision is not available ({reason}); {builtin}") from None
    ctor = getattr(tvm, name, None)
    known = set(tvm.list_models()) if hasattr(tvm, "list_models") else None
    if ctor is None or not callable(ctor) or (known is not None and name not in known):
        raise ModelError(
            f"unknown torchvision model {name!r}; use a name from torchvision.models.list_models(),"
            f" e.g. torchvision:resnet34, or a {builtin}"
        )
    sized = _image_size_args(name, input_shape)
    try:
        extra = dict(sized)
        if name in ("googlenet", "inception_v3"):  # train-mode aux heads return namedtuples, not logits
            extra.update(aux_logits=False, init_weights=True)
        model = ctor(weights=None, num_classes=n_outputs, **extra)
    except Exception as exc:  # noqa: BLE001 - torchvision raises many kinds here
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if sized:
            msg += f" (built for the data's {input_shape[1]}x{input_shape[2]} images; image sets take data.resize=N)"
        raise ModelError(f"torchvision:{name} cannot be built: {msg}") from None
    if len(input_shape) == 3:
        _replace_first_conv(model, input_shape[0])
    make_switchable(model, residual=cfg.residual)
    return model
