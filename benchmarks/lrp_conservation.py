"""Relevance conservation per architecture and composite, with and without biases.

For each architecture the network gets non-trivial batch-norm statistics (running stats of one batch, gamma in
[0.5, 1.5]) and then either

* **no biases**: every conv/linear bias 0 and each BN's beta = mean * gamma / std, so BN is a pure scaling and no bias
  survives canonization; the input is scaled (the net is positively homogeneous) so explained logits are >= 1; or
* **biases**: beta ~ N(0, 0.3), conv/linear biases ~ N(0, 0.1), as in a trained network.

Reported per composite: max over images of ``|sum(input relevance) - logit| / |logit|`` for the argmax-|logit| class,
plus, with biases, the same with ``zero_params="bias"`` (rules ignore biases in their denominators). Also reported:
``canon``: max |canonized - plain| logits relative to max |logit| (0 up to round-off means the canonizers are exact).

Run:
    OMP_NUM_THREADS=1 python -m benchmarks lrp_conservation                 # small architectures, 32 px
    OMP_NUM_THREADS=1 python -m benchmarks lrp_conservation --arch resnet50 densenet121 --side 64
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from torch import nn

from lit_xai.explainers import lrp_relevance
from lit_xai.models.architectures import ARCHITECTURES, build_architecture, get_spec

__all__ = ["calibrate", "conservation_errors"]

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")


@torch.no_grad()
def calibrate(net: nn.Module, batch: torch.Tensor, zero_bias: bool, generator: torch.Generator) -> nn.Module:
    """Non-trivial BN statistics from ``batch``; biases removed exactly (``zero_bias``) or randomised; eval mode."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.zeros_like(m.bias) if zero_bias else torch.randn(m.bias.shape, generator=generator) / 10)
    for m in norms:
        m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
        m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.3)
        m.reset_running_stats()
        m.momentum = 1.0
    net.train()
    net(batch)
    net.eval()
    for m in norms:
        m.momentum = 0.1
        if zero_bias:
            m.bias.copy_(m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps))
    return net


def conservation_errors(arch: str, zero_bias: bool, side: int = 32, n: int = 4) -> dict[str, float]:
    """``{column: max relative conservation error}`` for one architecture (see the module docstring)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    net = calibrate(
        build_architecture(arch, 5), torch.randn(8, 3, side, side, generator=generator), zero_bias, generator
    )
    x = torch.randn(n, 3, side, side, generator=generator)
    with torch.no_grad():
        logits = net(x)
    targets = logits.abs().argmax(1)
    rows = torch.arange(n)
    if zero_bias:
        x = x * max(1.0, 1.0 / logits[rows, targets].abs().min().item())
        with torch.no_grad():
            logits = net(x)
    explained = logits[rows, targets]
    with torch.no_grad():
        handles = [h for c in get_spec(arch).canonizers() for h in c.apply(net)]
        try:
            canonized = net(x)
        finally:
            for handle in handles:
                handle.remove()
    errors = {"canon": ((canonized - logits).abs().max() / logits.abs().max()).item()}
    variants = [("", {})] if zero_bias else [("", {}), ("/zb", {"zero_params": "bias"})]
    for composite in COMPOSITES:
        for suffix, kwargs in variants:
            relevance = lrp_relevance(net, x, targets, composite=composite, composite_kwargs=kwargs)
            error = (relevance.flatten(1).sum(1) - explained).abs() / explained.abs()
            errors[composite + suffix] = error.max().item()
    return errors


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=sorted(n for n, s in ARCHITECTURES.items() if s.small))
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for zero_bias in (True, False):
        print(f"\n== {'no biases' if zero_bias else 'with biases'} ({args.side}px): max relative conservation error")
        table = {arch: conservation_errors(arch, zero_bias, args.side) for arch in args.arch}
        columns = list(next(iter(table.values())))
        print(f"{'architecture':24s}" + "".join(f"{c:>23s}" for c in columns))
        for arch, errors in table.items():
            print(f"{arch:24s}" + "".join(f"{errors[c]:23.1e}" for c in columns), flush=True)


if __name__ == "__main__":
    main()
