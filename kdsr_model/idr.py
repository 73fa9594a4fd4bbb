"""``kdsr-idr``: how well a model's implicit degradation representation (IDR) tells degradations apart.

    kdsr-idr -m MODEL --hr HR_DIR --out OUT_DIR [--sweep iso|aniso|noise] [--levels 8] [--crops 8]

For every HR image, ``--crops`` seeded crops are degraded with each of ``--levels`` levels of one
classic degradation (``iso``: blur sigma from 0.2 to the scale; ``aniso``: lambda1 from 0.5 to
the scale with lambda2 = lambda1 / 2 and a seeded theta; ``noise``: sigma-2 blur plus noise 0 to
50), and the model's IDR (student: from the LR; teacher: from LR + HR) is extracted. Writes
``OUT_DIR/idr_tsne.png`` (t-SNE of the IDRs coloured by level, the paper's Fig. 6),
``OUT_DIR/idr.npz`` (IDRs, levels, values) and ``OUT_DIR/idr.json`` with two separability
figures, printed too: the 5-NN accuracy of the level (chance is 1 / levels) and the R^2 of a
linear (ridge) probe predicting the level value, both cross-validated with whole photos held
out (grouped folds: crops of one photo never sit in both the training and the test fold, so
a representation that only recognises the photo scores at chance).

The swap test asks whether the generator uses the IDR: each photo's first crop at the sweep's
lowest and highest level is upscaled with its own IDR and with the other level's, and
``idr.json`` gets ``swap``: the mean absolute change of the output (0-255) and the PSNR against
the HR with the own and the swapped IDR (an IDR that is used well scores higher as its own).
``spread`` compares how far the IDR moves across the levels of one crop with how far it moves
across crops: a collapsed IDR (one constant vector) has a ratio near 0.
Needs the ``idr`` extra (scikit-learn, matplotlib).
"""
import argparse
import json
import math
import os
import sys

import cv2
import numpy as np
import torch

from kdsr_arch.checkpoint import load_kdsr

from .data.classic import anisotropic_gaussian_kernels, classic_degrade, isotropic_gaussian_kernels
from .errors import MissingFileError, OptionError, tool
from .io import atomic_output, is_image_name, write_atomic
from .upscaler import device_option

SWEEPS = ('iso', 'aniso', 'noise')


def _optional_deps():
    try:
        import matplotlib
        import sklearn  # noqa: F401
    except ImportError as err:
        raise OptionError(f'kdsr-idr needs scikit-learn and matplotlib ({err.name} is missing): '
                          "pip install 'kdsr[idr]'.") from None
    matplotlib.use('Agg')


def sweep_values(sweep, levels, scale):
    """The ``levels`` values of a sweep (sigma, lambda1 or noise std), evenly spaced."""
    low, high = {'iso': (0.2, float(scale)), 'aniso': (0.5, float(scale)), 'noise': (0.0, 50.0)}[sweep]
    return np.linspace(low, high, levels).round(4).tolist()


def degrade(hr, sweep, value, scale, generator):
    """One HR crop (1, 3, H, W) in [0, 1] -> its LR under the sweep's degradation at ``value``."""
    if sweep == 'iso':
        kernel, noise = isotropic_gaussian_kernels(torch.tensor([value], dtype=torch.float64)), 0.0
    elif sweep == 'aniso':
        theta = torch.rand(1, generator=generator, dtype=torch.float64) * math.pi
        kernel = anisotropic_gaussian_kernels(torch.tensor([value], dtype=torch.float64),
                                              torch.tensor([value / 2], dtype=torch.float64), theta)
        noise = 0.0
    else:
        kernel, noise = isotropic_gaussian_kernels(torch.tensor([2.0], dtype=torch.float64)), value
    noise_t = torch.tensor([noise], dtype=torch.float64)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1, ), generator=generator)))
    return classic_degrade(hr, kernel, noise_t, scale)


def read_crops(hr_dir, crops, size, seed, on_skip=None):
    """``crops`` seeded ``size`` x ``size`` crops of every image of ``hr_dir``: ``(float64 RGB tensors,
    photo index of each)``. Unusable images are reported to ``on_skip(path, reason)``."""
    if not os.path.isdir(hr_dir):
        raise MissingFileError(f'--hr {hr_dir}: no such folder.')
    names = [f for f in sorted(os.listdir(hr_dir)) if is_image_name(f)]
    rng = np.random.default_rng(seed)
    out, groups = [], []
    for name in names:
        img = cv2.imread(os.path.join(hr_dir, name), cv2.IMREAD_COLOR)
        reason = 'not a readable image' if img is None else (
            f'smaller than --size {size}' if min(img.shape[:2]) < size else None)
        if reason:
            if on_skip:
                on_skip(os.path.join(hr_dir, name), reason)
            continue
        h, w = img.shape[:2]
        photo = len(set(groups))
        for _ in range(crops):
            groups.append(photo)
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop = img[top:top + size, left:left + size, ::-1].astype(np.float64) / 255
            out.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None])
    if not out:
        raise MissingFileError(f'--hr {hr_dir}: no readable images of at least {size}x{size}.')
    return out, groups


@torch.inference_mode()
def extract_idrs(net, is_teacher, crops, sweep, values, scale, seed=0, device='cpu', progress=True):
    """IDRs (N, C) of ``net`` for every crop x level (crop-major), with the level index and value of each."""
    from tqdm import tqdm
    generator = torch.Generator().manual_seed(seed)
    net = net.to(device).eval()
    feats, levels, vals = [], [], []
    for hr in tqdm(crops, desc='IDRs', unit='crop', disable=not progress):
        for level, value in enumerate(values):
            lr = degrade(hr, sweep, value, scale, generator).float().to(device)
            idr = net.encode(lr, hr.float().to(device))[0] if is_teacher else net.encode(lr)[0]
            feats.append(idr[0].float().cpu().numpy())
            levels.append(level)
            vals.append(value)
    return np.stack(feats), np.array(levels), np.array(vals)


def spread(feats, levels):
    """How much the IDR moves with the degradation against how much it moves with the content:
    the mean (over IDR channels) std across the levels of one crop, the mean std across crops
    at one level, and their ratio. A collapsed IDR (a constant the generator uses as a bias)
    has a ratio near 0 whatever a standardised classifier may still find in it."""
    f = np.asarray(feats, dtype=np.float64).reshape(-1, levels, feats.shape[-1])  # crops, levels, C
    across_levels, across_crops = float(f.std(1).mean()), float(f.std(0).mean())
    return {'across_levels': across_levels, 'across_crops': across_crops,
            'ratio': across_levels / across_crops if across_crops > 0 else float('inf')}


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b)**2).mean().clamp_min(1e-12)))


@torch.inference_mode()
def swap_effect(net, is_teacher, crops, photos, sweep, values, scale, seed=0, device='cpu'):
    """The IDR swap test on the first crop of each photo, between the lowest and the highest
    level: a dict with ``mean_abs_change`` (0-255) and mean ``psnr_own`` / ``psnr_swapped`` (dB)."""
    generator = torch.Generator().manual_seed(seed + 1)
    net = net.to(device).eval()
    firsts = [crops[photos.index(p)] for p in sorted(set(photos))]
    change, own, swapped = [], [], []
    for hr in firsts:
        hr_d = hr.float().to(device)
        lrs = [degrade(hr, sweep, v, scale, generator).float().to(device) for v in (values[0], values[-1])]
        idrs = [net.encode(lr, hr_d)[0] if is_teacher else net.encode(lr)[0] for lr in lrs]
        for i, lr in enumerate(lrs):
            mine = net.upsample(lr, idrs[i]).clamp(0, 1)
            other = net.upsample(lr, idrs[1 - i]).clamp(0, 1)
            change.append(float((mine - other).abs().mean()) * 255)
            own.append(_psnr(mine, hr_d))
            swapped.append(_psnr(other, hr_d))
    return {'pairs': len(change), 'mean_abs_change': float(np.mean(change)), 'psnr_own': float(np.mean(own)),
            'psnr_swapped': float(np.mean(swapped))}


def separability(feats, levels, values, seed=0, groups=None):
    """Cross-validated 5-NN accuracy of the level and R^2 of a ridge probe on the value.

    ``groups`` (the photo of each sample): folds hold out whole photos (up to 5 folds); without
    it, stratified / plain 5-fold splits of the samples."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, cross_val_predict, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    if groups is not None:
        groups = np.asarray(groups)
        folds = min(5, len(np.unique(groups)))
        if folds < 2:
            raise OptionError('kdsr-idr: grouped cross-validation needs at least 2 photos in --hr.')
        split = GroupKFold(folds)
        acc = cross_val_score(knn, feats, levels, groups=groups, cv=split).mean()
        pred = cross_val_predict(probe, feats, values, groups=groups, cv=split)
        cv = f'{folds} folds, grouped by photo'
    else:
        folds = min(5, int(np.bincount(levels).min()))
        if folds < 2:
            raise OptionError('kdsr-idr: too few samples per level for cross-validation; raise --crops.')
        acc = cross_val_score(knn, feats, levels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean()
        pred = cross_val_predict(probe, feats, values, cv=KFold(folds, shuffle=True, random_state=seed))
        cv = f'{folds} folds over samples'
    r2 = 1 - ((pred - values)**2).sum() / max(((values - values.mean())**2).sum(), 1e-12)
    return {'knn_accuracy': float(acc), 'chance': 1 / len(np.unique(levels)), 'linear_r2': float(r2), 'cv': cv}


def tsne_plot(feats, values, path, title, label, seed=0):
    """t-SNE of the IDRs coloured by the degradation value, written to ``path`` (PNG)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    emb = TSNE(n_components=2, perplexity=min(30, max(2, len(feats) // 4)), init='pca',
               random_state=seed).fit_transform(feats)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    points = ax.scatter(emb[:, 0], emb[:, 1], c=values, cmap='viridis', s=10)
    fig.colorbar(points, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def run(model, hr_dir, out_dir, sweep='iso', levels=8, crops=8, size=128, seed=0, device='auto', progress=True,
        on_skip=None):
    """Extract, score and plot; returns the ``idr.json`` dict."""
    _optional_deps()
    if sweep not in SWEEPS:
        raise OptionError(f'--sweep {sweep}: choose one of {", ".join(SWEEPS)}.')
    if not os.path.isfile(model):
        raise MissingFileError(f'-m {model}: no such file.')
    try:
        net, spec = load_kdsr(model)
    except (ValueError, KeyError) as err:
        raise OptionError(f'-m {model}: {err}') from None
    device = device_option(device)
    if size % spec.scale:
        raise OptionError(f'--size {size} must be a multiple of the model scale ({spec.scale}).')
    values = sweep_values(sweep, levels, spec.scale)
    hr_crops, photos = read_crops(hr_dir, crops, size, seed, on_skip)
    feats, lv, vals = extract_idrs(net, spec.is_teacher, hr_crops, sweep, values, spec.scale, seed, device, progress)
    scores = separability(feats, lv, vals, seed, groups=np.repeat(photos, len(values)))
    scores['spread'] = spread(feats, len(values))
    scores['swap'] = swap_effect(net, spec.is_teacher, hr_crops, photos, sweep, values, spec.scale, seed, device)
    os.makedirs(out_dir, exist_ok=True)
    label = {'iso': 'blur sigma', 'aniso': 'lambda1 (lambda2 = lambda1 / 2)', 'noise': 'noise std (0-255)'}[sweep]
    title = (f'{os.path.basename(model)}: IDR t-SNE, {sweep} sweep\n'
             f'5-NN accuracy {scores["knn_accuracy"]:.3f} (chance {scores["chance"]:.3f}), '
             f'linear R^2 {scores["linear_r2"]:.3f}')
    tsne_plot(feats, vals, os.path.join(out_dir, 'idr_tsne.png'), title, label, seed)
    np.savez(os.path.join(out_dir, 'idr.npz'), idr=feats, level=lv, value=vals)
    result = {'model': model, 'arch': spec.options(), 'teacher': spec.is_teacher, 'sweep': sweep, 'values': values,
              'samples': int(len(feats)), **scores}
    write_atomic(os.path.join(out_dir, 'idr.json'), lambda f: json.dump(result, f, indent=1), mode='w')
    return result


@tool('kdsr-idr')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='kdsr-idr', description=__doc__.split('\n\n')[0])
    parser.add_argument('-m', '--model', required=True, help='a KDSR student or teacher checkpoint')
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='output folder (idr_tsne.png, idr.json, idr.npz)')
    parser.add_argument('--sweep', default='iso', choices=SWEEPS)
    parser.add_argument('--levels', type=int, default=8)
    parser.add_argument('--crops', type=int, default=8, help='crops per HR image')
    parser.add_argument('--size', type=int, default=128, help='HR crop size')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='where the net runs (default: auto, CUDA when there is one)')
    args = parser.parse_args(argv)
    result = run(args.model, args.hr, args.out, args.sweep, args.levels, args.crops, args.size, args.seed, args.device,
                 on_skip=lambda path, reason: print(f'kdsr-idr: skipped {path}: {reason}.', file=sys.stderr))
    print(f'| model | sweep | samples | 5-NN accuracy (chance) | linear R^2 |\n|---|---|---|---|---|\n'
          f'| {os.path.basename(args.model)} | {args.sweep} | {result["samples"]} | '
          f'{result["knn_accuracy"]:.3f} ({result["chance"]:.3f}) | {result["linear_r2"]:.3f} |')
    sp = result['spread']
    print(f'IDR spread: {sp["across_levels"]:.3g} across degradation levels, {sp["across_crops"]:.3g} across '
          f'crops (ratio {sp["ratio"]:.3g}; near 0: the IDR ignores the degradation)')
    swap = result['swap']
    print(f'IDR swap ({swap["pairs"]} upscales, lowest <-> highest level): output changes by '
          f'{swap["mean_abs_change"]:.2f}/255 on average; PSNR with its own IDR {swap["psnr_own"]:.2f} dB, '
          f'with the other level\'s {swap["psnr_swapped"]:.2f} dB')
    print(f'wrote {os.path.join(args.out, "idr_tsne.png")} and idr.json')


if __name__ == '__main__':
    sys.exit(main())
