"""``kdsr-eval``: PSNR / SSIM (and LPIPS) of KDSR checkpoints and bicubic, as the paper's tables.

    kdsr-eval -m KDSRsM_iso_x4.pt --set sets/Set5_g8 --set sets/Urban100_g8
    kdsr-eval -m KDSRS-GAN.pth KDSRT-rec.pth --lq AIM2019/LR --gt AIM2019/HR --lpips-weights vgg16-397923af.pth

Data: ``--set DIR``, a folder written by ``kdsr-testset`` (``protocol.json`` gives the scale and
the degradation tags, ``HR/`` the ground truth, one LR folder per tag), and/or ``--lq DIR --gt
DIR`` paired folders (files matched by stem; a GT larger than scale x LR by less than the scale
is cropped at the bottom/right, as ``kdsr-testset`` crops its HR).

Protocol (the authors' test code, KDSR-GAN's ``Metric/PSNR.py``): SR outputs are quantised to
8 bits; PSNR and SSIM are BasicSR's ``calculate_psnr`` / ``calculate_ssim`` on the Y channel with
a border crop of the scale (``--crop`` to change it). LPIPS (``lpips`` package, AlexNet or VGG16
backbone read from a local torchvision weights file) compares the whole RGB images in [-1, 1].
A set's score is the mean over its degradations of the mean over its images. Students see the
LR image only; a teacher (``BlindSR_TA``) is an oracle: its encoder is given the HR image, and
its row says so. The bicubic row is MATLAB bicubic (BasicSR's ``matlab_functions.imresize``).
Students run in fp32 through ``KDSRUpscaler`` (one IDR per image; ``--tile`` for large images),
teachers untiled. Nothing is downloaded.
"""
import argparse
import os
import sys

from tqdm import tqdm

from .errors import OptionError, tool
from .evaluation import *  # noqa: F401,F403  (the library API, importable from here as before)
from .evaluation import __all__ as _library
from .evaluation import evaluate, format_tables, write_csv, write_json
from .io import ensure_writable_folder

__all__ = [*_library, 'main', 'parse_args', 'check_outputs']


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='kdsr-eval',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    many = dict(action='extend', nargs='+', default=[])  # repeat the flag or list several
    p.add_argument('-m', '--model', metavar='PATH', **many,
                   help='KDSR checkpoint(s), students and/or teachers (repeat the flag or list several)')
    p.add_argument('--bicubic', action=argparse.BooleanOptionalAction, default=True,
                   help='a MATLAB-bicubic row (default: on; --no-bicubic leaves it out)')
    p.add_argument('--set', metavar='DIR', **many, help='a test set written by kdsr-testset (repeatable)')
    p.add_argument('--lq', action='append', default=[], metavar='DIR', help='LR folder of a pair (with --gt)')
    p.add_argument('--gt', action='append', default=[], metavar='DIR', help='GT folder of a pair (with --lq)')
    p.add_argument('--crop', type=int, default=None, help='border pixels left out of PSNR/SSIM (default: the scale)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('-t', '--tile', type=int, default=0, help='LR tile size for students (0: automatic)')
    p.add_argument('--lpips_weights', '--lpips-weights', default=None, metavar='PATH',
                   help='torchvision alexnet or vgg16 weights file: adds LPIPS (needs the lpips package)')
    p.add_argument('--csv', default=None, metavar='PATH', help='write per-image rows and means as CSV')
    p.add_argument('--json', default=None, metavar='PATH', help='write the full results as JSON')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --csv / --json file')
    args = p.parse_args(argv)
    if len(args.lq) != len(args.gt):
        p.error(f'--lq and --gt come in pairs ({len(args.lq)} --lq, {len(args.gt)} --gt).')
    if args.crop is not None and args.crop < 0:
        p.error('--crop must be 0 or more.')
    if args.tile < 0:
        p.error(f'-t/--tile {args.tile}: must be 0 (automatic) or more')
    return args


def check_outputs(outputs, overwrite):
    """Before any evaluation: each ``(flag, path)`` output is new (or ``overwrite``) and writable."""
    for flag, path in outputs:
        if not path:
            continue
        if os.path.isdir(path):
            raise OptionError(f'{flag} {path} is a folder; name a file.')
        if os.path.exists(path) and not overwrite:
            raise OptionError(f'{flag} {path} exists; choose another name or add --overwrite.')
        ensure_writable_folder(os.path.dirname(os.path.abspath(path)), f'{flag} {path}')


@tool('kdsr-eval')
def main(argv=None):
    args = parse_args(argv)
    check_outputs((('--csv', args.csv), ('--json', args.json)), args.overwrite)
    results = evaluate(
        args.model,
        args.set,
        list(zip(args.lq, args.gt)),
        bicubic=args.bicubic,
        crop=args.crop,
        device=args.device,
        tile=args.tile,
        lpips_weights=args.lpips_weights,
        on_skip=lambda path, reason: tqdm.write(f'kdsr-eval: skipped {path}: {reason}', file=sys.stderr))
    print(format_tables(results))
    for flag, path, write in (('--csv', args.csv, write_csv), ('--json', args.json, write_json)):
        if path:
            try:
                write(results, path)
            except OSError as err:
                print(f'kdsr-eval: error: {flag} {path}: {err.strerror or err}', file=sys.stderr)
                return 2
    if results['failed']:
        print(
            f'kdsr-eval: {len(results["failed"])} file(s) skipped (see above); the means leave them out.',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
