"""Blend two KDSR checkpoints of one net in weight space (a "model soup"): OUT = (1 - a) * A + a * B over
every floating-point tensor. Both should descend from one training run (every default-model stage after
7b continues v7), so that the straight line between them stays in one basin; docs/MODEL.md "Stage 18".
With ``--part G`` (or ``--part encoder``) only that part is blended and the rest is A's: a generator
blended towards B's under A's encoder keeps A's IDR as it is (docs/MODEL.md "Stage 24").

    python scripts/interpolate_models.py A.pth B.pth 0.5 OUT.pth [--part G]

Writes the EMA weights only, as scripts/export_model.py does; an existing OUT is left alone.
"""
import argparse

import torch

from kdsr_arch.checkpoint import load_kdsr
from kdsr_model.io import make_weights_file


PARTS = ('all', 'G', 'encoder')


def interpolate(a_path, b_path, alpha, part='all'):
    """The blended state dict (``part``: ``all``, ``G`` or ``encoder``; the rest is A's); ValueError
    when A and B are different nets."""
    net_a, spec_a = load_kdsr(a_path)
    net_b, spec_b = load_kdsr(b_path)
    if spec_a != spec_b:
        raise ValueError(f'{a_path} ({spec_a.arch} {spec_a.options()}) and {b_path} ({spec_b.arch} '
                         f'{spec_b.options()}) are different nets; give two checkpoints of one architecture.')
    sa, sb = net_a.state_dict(), net_b.state_dict()
    prefix = {'all': '', 'G': 'G.', 'encoder': f'{net_a.ENCODER}.'}[part]
    return {k: torch.lerp(v, sb[k], alpha) if k.startswith(prefix) and v.is_floating_point() else v
            for k, v in sa.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('a', help='checkpoint A (weight 1 - alpha)')
    parser.add_argument('b', help='checkpoint B (weight alpha)')
    parser.add_argument('alpha', type=float, help="B's weight, in [0, 1]")
    parser.add_argument('out')
    parser.add_argument('--part', choices=PARTS, default='all',
                        help='blend only the generator G or only the encoder; the rest is A\'s (default: all)')
    args = parser.parse_args()
    if not 0 <= args.alpha <= 1:
        parser.error(f'alpha {args.alpha:g} is outside [0, 1].')
    make_weights_file('interpolate_models.py', args.out, lambda: interpolate(args.a, args.b, args.alpha, args.part))
    part = '' if args.part == 'all' else f' ({args.part} only; the rest is A\'s)'
    print(f'{args.out}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}{part}')


if __name__ == '__main__':
    main()
