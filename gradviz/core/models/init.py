"""Weight initialisation schemes, applied in place to every Linear and Conv layer of a model.

`default` leaves PyTorch's own initialisation (or the model's own, e.g. ResNet-18's) alone. The other
schemes set the weights and zero the biases; normalisation layers keep weight 1 and bias 0.

- `zeros`: every weight and bias 0. All units of a layer then compute the same thing and receive the
  same gradient, so symmetry is never broken (seed 002: a net initialised with zeros cannot learn).
- `normal`: N(0, 1), far too large for deep nets (seed 003's LeNet without careful init).
- `xavier`: Glorot normal, std = sqrt(2 / (fan_in + fan_out)).
- `he`: Kaiming normal, fan_in mode, ReLU gain: std = sqrt(2 / fan_in) (seed 002).
"""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("default", "zeros", "normal", "xavier", "he")

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(model: nn.Module, scheme: str) -> int:
    """Apply `scheme` to every Linear/Conv layer of `model`; returns how many layers it touched.

    Draws from the global torch RNG, so callers fork and seed it first.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}; accepted values are {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return 0
    touched = 0
    for m in model.modules():
        if not isinstance(m, _LAYERS):
            continue
        w = m.weight
        if scheme == "zeros":
            nn.init.zeros_(w)
        elif scheme == "normal":
            nn.init.normal_(w, 0.0, 1.0)
        elif scheme == "xavier":
            nn.init.xavier_normal_(w)
        elif scheme == "he":
            nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
        touched += 1
    return touched
