"""Layer table: parameters, FLOPs by hand, execution order, output shapes (seed 001's ResNet-18)."""

from __future__ import annotations

import torch
from torch import nn

from gradviz.config import ModelConfig
from gradviz.core.models import build_model, set_norm
from gradviz.core.summary import LayerRow, format_table, summarize


def test_params_sum_to_the_model_and_rows_are_layers():
    for cfg, shape, n in (
        (ModelConfig(kind="mlp", depth=3, width=10, norm=True), (4,), 2),
        (ModelConfig(kind="conv", depth=1, width=4, norm=True), (3, 16, 16), 5),
        (ModelConfig(kind="lenet", norm=True), (1, 28, 28), 10),
    ):
        model = build_model(cfg, shape, n, 0)
        rows = summarize(model, shape)
        assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
        owners = {name for name, m in model.named_modules() if list(m.parameters(recurse=False))}
        assert {r.name for r in rows} == owners and len(rows) == len(owners)


def test_linear_and_norm_flops_by_hand():
    model = build_model(
        ModelConfig(kind="mlp", depth=1, width=7, norm=True, norm_kind="layer"), (5,), 3, 0
    )
    rows = {r.name: r for r in summarize(model, (5,))}
    assert rows["input"].flops == 2 * 5 * 7 + 7 and rows["input"].output_shape == (7,)
    assert rows["blocks.0.linear"].flops == 2 * 7 * 7 + 7
    assert rows["blocks.0.norm"].flops == 2 * 7 and rows["blocks.0.norm"].type == "LayerNorm"
    assert rows["head"].flops == 2 * 7 * 3 + 3 and rows["head"].output_shape == (3,)
    assert rows["head"].params == 7 * 3 + 3
    bare = nn.Sequential(nn.Linear(4, 6, bias=False))
    assert summarize(bare, (4,))[0].flops == 2 * 4 * 6


def test_conv_flops_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False),
        nn.BatchNorm2d(8),
    )
    rows = summarize(model, (3, 10, 10))
    assert rows[0].output_shape == (8, 5, 5)
    assert rows[0].flops == 2 * 3 * 9 * 8 * 25 + 8 * 25
    assert rows[1].flops == 2 * (8 // 4) * 9 * 8 * 25
    assert rows[2].flops == 2 * 8 * 25 and rows[2].params == 16


def test_transposed_conv_flops_count_every_multiply():
    """A decoder's ConvTranspose read 0 FLOPs. Checked against the multiplies a transposed
    convolution does: each input value times its kernel slice, counted by running the layer on
    one-hot inputs with all-ones weights (the output's sum is then the number of products)."""
    for layer, shape in (
        (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (4, 5, 5)),
        (nn.ConvTranspose1d(3, 4, 4, stride=3, dilation=2, groups=1, bias=False), (3, 7)),
        (nn.ConvTranspose2d(4, 6, (2, 3), stride=(2, 1), groups=2), (4, 3, 6)),
    ):
        rows = summarize(nn.Sequential(layer), shape)
        probe = type(layer)(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                            layer.output_padding, layer.groups, bias=False, dilation=layer.dilation)
        nn.init.ones_(probe.weight)
        with torch.no_grad():
            # without padding's crop every product lands in the output: padding 0 counts them all
            probe.padding = tuple(0 for _ in probe.padding)
            probe.output_padding = tuple(0 for _ in probe.output_padding)
            products = float(probe(torch.ones(1, *shape)).sum())
        out = layer(torch.zeros(1, *shape))
        bias = out[0].numel() if layer.bias is not None else 0
        assert rows[0].output_shape == tuple(out.shape[1:])
        assert rows[0].flops == 2 * products + bias, layer


def test_order_is_execution_order_and_skipped_layers_follow_their_predecessor():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)  # registered first, runs last
            self.body = nn.Linear(3, 4)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    assert [r.name for r in summarize(Backwards(), (3,))] == ["body", "head"]
    model = build_model(ModelConfig(kind="mlp", depth=2, width=4, norm=False), (2,), 1, 0)
    rows = summarize(model, (2,))
    assert [r.name for r in rows] == [
        "input",
        "blocks.0.linear",
        "blocks.0.norm",
        "blocks.1.linear",
        "blocks.1.norm",
        "head",
    ]
    skipped = rows[2]
    assert skipped.output_shape == () and skipped.flops == 0 and skipped.params == 8
    set_norm(model, True)
    assert summarize(model, (2,))[2].output_shape == (4,)


def test_model_state_is_restored():
    model = build_model(ModelConfig(kind="mlp", depth=2, width=4, norm=True), (2,), 1, 0)
    model.train()
    model.blocks[1].eval()
    stats = model.blocks[0].norm.running_mean.clone()
    summarize(model, (2,))
    assert model.training and model.blocks[0].training and not model.blocks[1].training
    assert model.blocks[1].linear.training is False
    assert torch.equal(stats, model.blocks[0].norm.running_mean)
    assert all(p.grad is None for p in model.parameters())


def test_resnet18_shapes_like_seed_001():
    model = build_model(
        ModelConfig(kind="resnet18", norm=True, residual=True), (1, 224, 224), 10, 0
    )
    rows = {r.name: r for r in summarize(model, (1, 224, 224))}
    assert rows["conv1"].output_shape == (64, 112, 112)
    assert rows["layer1.1.bn2"].output_shape == (64, 56, 56)
    assert rows["layer2.1.bn2"].output_shape == (128, 28, 28)
    assert rows["layer3.1.bn2"].output_shape == (256, 14, 14)
    assert rows["layer4.1.bn2"].output_shape == (512, 7, 7)
    assert rows["layer2.0.downsample.0"].output_shape == (128, 28, 28)
    assert rows["fc"].output_shape == (10,)
    assert sum(r.params for r in rows.values()) == 11_175_370  # ~11.17 M, as in seed 004
    # the well-known figures for ImageNet's ResNet-18: 11,689,512 parameters, ~1.8 G multiply-adds
    big = build_model(ModelConfig(kind="resnet18", norm=True), (3, 224, 224), 1000, 0)
    big_rows = summarize(big, (3, 224, 224))
    assert sum(r.params for r in big_rows) == 11_689_512
    assert 3.5e9 < sum(r.flops for r in big_rows) < 3.7e9


def test_format_table():
    rows = [
        LayerRow("input", "Linear", (7,), 42, 77),
        LayerRow("blocks.0.norm", "BatchNorm1d", (), 14, 0),
        LayerRow("head", "Linear", (3,), 1_234_567, 2_000_000),
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params", "FLOPs"]
    assert any(line.startswith("head") and "1,234,567" in line for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert "1,234,623" in total and "2,000,077" in total
    # columns are aligned: every params cell ends at the same column
    ends = {
        line.index(c) + len(c)
        for line, c in zip(lines[2:5], ("42", "14", "1,234,567"), strict=True)
    }
    assert len(ends) == 1


class _SequenceNet(nn.Module):
    """Attention and recurrent layers in their default (L, N, E) layout and batch-first."""

    def __init__(self, e: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2)  # batch_first=False: (L, N, E)
        self.lstm = nn.LSTM(e, 5, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(10, 3, batch_first=True)

    def forward(self, x):  # x: (N, L, E)
        s = x.transpose(0, 1)
        a, _ = self.attn(s, s, s)
        h, _ = self.lstm(a)  # (L, N, 10)
        g, _ = self.gru(h.transpose(0, 1))  # (N, L, 3)
        return g


def test_attention_and_recurrent_layers_by_hand():
    """A Transformer's attention read 0 FLOPs and its out_proj '-' (never called as a module), and a
    (L, N, E) layer's shape was (N, E): per example they are (L, E), with FLOPs counted by hand."""
    torch.manual_seed(0)
    length, e = 6, 8
    rows = {r.name: r for r in summarize(_SequenceNet(e), (length, e))}
    assert list(rows) == ["attn", "attn.out_proj", "lstm", "gru"]
    assert rows["attn"].output_shape == rows["attn.out_proj"].output_shape == (length, e)
    assert rows["attn"].flops == length * (2 * e * 3 * e + 3 * e) + 4 * length * length * e
    assert rows["attn.out_proj"].flops == length * (2 * e * e + e)
    assert rows["lstm"].output_shape == (length, 10)
    # 2 layers x 2 directions, 4 gates of 5: W_ih (20 x 8, then 20 x 10), W_hh (20 x 5), two biases of 20
    lstm_per_step = 2 * (2 * (20 * 8 + 20 * 5) + 2 * 20) + 2 * (2 * (20 * 10 + 20 * 5) + 2 * 20)
    assert rows["lstm"].flops == length * lstm_per_step
    assert rows["gru"].output_shape == (length, 3)
    assert rows["gru"].flops == length * (2 * (9 * 10 + 9 * 3) + 2 * 9)
    assert "-" not in format_table(list(rows.values())).split("total")[0].split()


def test_a_batch_first_attention_and_an_unbatched_call():
    e = 4

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(e, 1, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    net = SelfAttention()
    attn = net.attn
    [row, out_row] = summarize(net, (5, e))
    assert row.output_shape == out_row.output_shape == (5, e)
    from gradviz.core.summary import example_shape

    assert example_shape(attn, torch.zeros(5, e)) == (5, e)  # unbatched: the whole call is one example
    assert example_shape(nn.Linear(2, 3), torch.zeros(7, 3)) == (3,)


class _TiedLM(nn.Module):
    """A GPT's output layer tied to its embedding (and T5's `shared` embedding, owned twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.mid = nn.Linear(8, 8)
        self.out = nn.Linear(8, 50)
        self.out.weight = self.emb.weight  # its bias is its own

    def forward(self, x):
        return self.out(torch.tanh(self.mid(self.emb(x.long().clamp(0, 49)).mean(1))))


def test_tied_parameters_are_counted_once_in_the_total():
    """GPT-2's table said 163 M parameters for its 124 M: the output layer's weight is the
    embedding's, and the total counted it twice. The row keeps its own count, marked tied; the
    total equals the model's own count of distinct parameters."""
    model = _TiedLM()
    rows = summarize(model, (5,))
    assert [(r.name, r.params, r.tied) for r in rows] == [("emb", 400, 0), ("mid", 72, 0), ("out", 450, 400)]
    distinct = sum(p.numel() for p in model.parameters())  # torch counts a shared tensor once
    assert distinct == 522
    text = format_table(rows)
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert f"{distinct:,}" in total.split()
    assert any(line.startswith("out") and "450 (400 tied)" in line for line in text.splitlines())
    assert "522 parameters (tied ones counted once)" in text


class Conv1D(nn.Module):
    """Hugging Face's GPT-2 layer, as written there: a Linear whose weight is stored (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


def test_gpt2_conv1d_layers_count_their_flops():
    """GPT-2's attention and feed-forward layers are `Conv1D`s: the table gave them 0 FLOPs (GPT-2
    small read 0.6 GFLOPs per 8 tokens, its output layer's alone). Each output element costs a
    multiply-add per input feature, and one add for the bias."""
    tokens, nx, nf = 8, 12, 36
    rows = summarize(nn.Sequential(Conv1D(nf, nx), nn.Tanh(), Conv1D(nx, nf)), (tokens, nx))
    assert [(r.output_shape, r.flops) for r in rows] == [
        ((tokens, nf), tokens * nf * (2 * nx + 1)),
        ((tokens, nx), tokens * nx * (2 * nf + 1)),
    ]



def test_the_stored_table_takes_its_dummy_batch_where_the_model_is():
    """A GPU run's table was taken with a CPU batch into a CUDA model, which raised, so its file had
    no table. Here the model sits on the meta device (no GPU needed) and the run says so."""
    import torch

    from gradviz.config import load_preset
    from gradviz.core.experiment import Experiment
    from gradviz.core.recording import Recording
    from gradviz.core.table import store_layer_table

    exp = Experiment(load_preset("demo").with_overrides({"model.depth": 2, "model.width": 8}))
    run = exp.runs[0]
    run.model.to("meta")
    run.device = torch.device("meta")
    rec = Recording()
    store_layer_table(rec, [run])
    rows = rec.meta["layer_table"][run.name]
    assert [r[0] for r in rows] == run.probe.layer_names and rows[1][2] == [8]
