"""Export a trained KDSR student (or teacher, for a recipe) for inference: the EMA weights only,
checked and re-loaded.

    python scripts/export_model.py experiments/NAME/models/net_g_latest.pth OUT.pth
"""
import os
import sys

from kdsr_arch import load_kdsr
from kdsr_model.io import save_weights


def main(src, dst):
    net, spec = load_kdsr(src)  # params_ema preferred; strict load proves the file is whole
    save_weights(net.state_dict(), dst)  # renamed to dst only once it re-loads
    print(f'{dst}: {"teacher" if spec.is_teacher else "student"} {spec.options()}, {sum(p.numel() for p in net.parameters()):,} parameters, '
          f'{os.path.getsize(dst) / 2**20:.1f} MiB')


if __name__ == '__main__':
    main(*sys.argv[1:3])
