"""The classic degradation (paper Eq. 1) against BasicSR's imresize and the analytic kernels."""
import math

import pytest
import torch
from basicsr.utils.matlab_functions import imresize

from kdsr_model.data.classic import (anisotropic_gaussian_kernels, bicubic_matrix, classic_degrade,
                                        isotropic_gaussian_kernels)
from conftest import PHOTO


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('size', [(37, 29), (48, 48)])
def test_bicubic_matrices_equal_basicsr_imresize(scale, size):
    torch.manual_seed(0)
    img = torch.rand(3, *size)
    expected = imresize(img, 1 / scale)
    got = bicubic_matrix(size[0], 1 / scale) @ img @ bicubic_matrix(size[1], 1 / scale).t()
    assert got.shape == expected.shape == (3, math.ceil(size[0] / scale), math.ceil(size[1] / scale))
    assert (got - expected).abs().max() < 1e-5


def test_isotropic_kernel_is_the_analytic_gaussian():
    k = isotropic_gaussian_kernels(torch.tensor([0.7, 2.6], dtype=torch.float64))
    for i, sigma in enumerate((0.7, 2.6)):
        x = torch.arange(21, dtype=torch.float64) - 10
        g = torch.exp(-x**2 / (2 * sigma**2))
        expected = torch.outer(g, g) / torch.outer(g, g).sum()
        assert torch.allclose(k[i], expected, atol=1e-12)


def test_anisotropic_kernel_is_the_analytic_gaussian():
    l1, l2, theta = 3.5, 1.5, math.radians(30)
    k = anisotropic_gaussian_kernels(*(torch.tensor([v], dtype=torch.float64) for v in (l1, l2, theta)))[0]
    c, s = math.cos(theta), math.sin(theta)
    # closed form of p^T Sigma^-1 p with Sigma = R diag(l1^2, l2^2) R^T: rotate p back, scale the axes
    y, x = torch.meshgrid(*(torch.arange(21, dtype=torch.float64) - 10, ) * 2, indexing='ij')
    u, v = c * x + s * y, -s * x + c * y
    expected = torch.exp(-0.5 * (u**2 / l1**2 + v**2 / l2**2))
    assert torch.allclose(k, expected / expected.sum(), atol=1e-12)
    # equal lambdas: the isotropic kernel whatever theta
    iso = anisotropic_gaussian_kernels(torch.tensor([2.0]), torch.tensor([2.0]), torch.tensor([1.0]))
    assert torch.allclose(iso, isotropic_gaussian_kernels(torch.tensor([2.0])), atol=1e-6)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_lr_size_quantisation_and_seeded_reproducibility(scale):
    hr = torch.rand(3, 3, 50, 44, generator=torch.Generator().manual_seed(1))
    kernels = isotropic_gaussian_kernels(torch.tensor([0.5, 2.0, 4.0]))
    noise = torch.tensor([0.0, 10.0, 25.0])
    torch.manual_seed(5)
    a = classic_degrade(hr, kernels, noise, scale)
    torch.manual_seed(5)
    b = classic_degrade(hr, kernels, noise, scale)
    assert a.shape == (3, 3, math.ceil(50 / scale), math.ceil(44 / scale))
    assert torch.equal(a, b)
    assert torch.equal(a, (a * 255).round() / 255)


def test_per_sample_batch_equals_one_at_a_time_without_noise():
    hr = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    kernels = anisotropic_gaussian_kernels(torch.tensor([0.5, 3.0]), torch.tensor([2.0, 1.0]), torch.tensor([0.3, 2.0]))
    batch = classic_degrade(hr, kernels, torch.zeros(2), 4)
    for i in range(2):
        one = classic_degrade(hr[i:i + 1], kernels[i:i + 1], torch.zeros(1), 4)
        assert torch.equal(batch[i:i + 1], one)
    assert not torch.equal(batch[0], batch[1])


def _digests(folder):
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*.png'))}


@pytest.mark.parametrize('protocol,scale,count', [('gaussian8', 4, 8), ('gaussian8', 3, 8), ('aniso_noise', 2, 33)])
def test_testset_is_byte_stable_and_sized(tmp_path, photos, protocol, scale, count):
    import os
    import subprocess

    import cv2

    from conftest import BIN
    hr = tmp_path / 'hr'
    hr.mkdir()
    img = cv2.imread(os.path.join(photos, 'val', PHOTO))
    cv2.imwrite(str(hr / 'garden.png'), img[:61, :50])  # not a multiple of the scale: cropped
    runs = []
    for run in ('a', 'b'):
        proc = subprocess.run([os.path.join(BIN, 'kdsr-testset'), '--hr', str(hr), '--out', str(tmp_path / run),
                               '--protocol', protocol, '--scale', str(scale)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        runs.append(_digests(tmp_path / run))
    assert runs[0] == runs[1]
    assert len(runs[0]) == count + 1  # every degradation + the HR
    h, w = 61 // scale * scale, 50 // scale * scale
    assert cv2.imread(str(tmp_path / 'a' / 'HR' / 'garden.png')).shape == (h, w, 3)
    lr_dirs = [d for d in (tmp_path / 'a').iterdir() if d.is_dir() and d.name != 'HR']
    assert len(lr_dirs) == count
    for d in lr_dirs:
        assert cv2.imread(str(d / 'garden.png')).shape == (h // scale, w // scale, 3)
    if protocol == 'aniso_noise':  # noise levels differ, the same kernel at noise 0 has no noise
        n0 = cv2.imread(str(tmp_path / 'a' / 'authors1_n0' / 'garden.png')).astype(int)
        n20 = cv2.imread(str(tmp_path / 'a' / 'authors1_n20' / 'garden.png')).astype(int)
        assert 10 < (n20 - n0).std() < 30


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('kind', ['iso', 'aniso'])
def test_degrader_is_seeded_exact_in_size_and_per_sample(scale, kind):
    from kdsr_model.data.classic import ClassicDegrader
    degrader = ClassicDegrader({'type': kind, 'noise': 25 if kind == 'aniso' else 0}, scale)
    gt = torch.rand(1, 3, 12 * scale, 12 * scale).expand(4, -1, -1, -1).contiguous()  # four copies of one image
    torch.manual_seed(3)
    lr = degrader(gt)
    torch.manual_seed(3)
    assert torch.equal(degrader(gt), lr)  # same seed, same batch
    assert lr.shape == (4, 3, 12, 12)
    assert torch.equal(lr, (lr * 255).round() / 255)
    assert all(not torch.equal(lr[0], lr[i]) for i in (1, 2, 3))  # one degradation per sample


def test_degrader_per_batch_draws_one_degradation_and_respects_the_ranges():
    from kdsr_model.data.classic import ClassicDegrader
    gt = torch.rand(1, 3, 32, 32).expand(3, -1, -1, -1).contiguous()
    lr = ClassicDegrader({'type': 'iso', 'per_batch': True}, 4)(gt)
    assert torch.equal(lr[0], lr[1]) and torch.equal(lr[0], lr[2])  # noise 0: identical outputs
    # the authors' sigma ranges by scale (U(0.2, s)), and noise std within U(0, noise)
    for scale in (2, 3, 4):
        kernels, noise = ClassicDegrader({'type': 'iso', 'noise': 10}, scale).sample(2000, 'cpu')
        centre = kernels[:, 10, 10]
        widest = isotropic_gaussian_kernels(torch.tensor([float(scale)]))[0, 10, 10]
        narrowest = isotropic_gaussian_kernels(torch.tensor([0.2]))[0, 10, 10]
        assert centre.min() >= widest - 1e-6 and centre.max() <= narrowest + 1e-6
        assert 0 <= noise.min() and noise.max() <= 10 and noise.std() > 2
    with pytest.raises(ValueError, match='classic_degradation: unknown key'):
        ClassicDegrader({'type': 'iso', 'sigma_max': 3}, 4)
    with pytest.raises(ValueError, match="'gauss' is not iso or aniso"):
        ClassicDegrader({'type': 'gauss'}, 4)


def test_old_module_path_still_works_with_a_deprecation_warning():
    import importlib
    import sys
    sys.modules.pop('kdsr_model.classic_degrade', None)
    with pytest.warns(DeprecationWarning, match='kdsr_model.data.classic'):
        old = importlib.import_module('kdsr_model.classic_degrade')
    from kdsr_model.data import classic
    assert old.ClassicDegrader is classic.ClassicDegrader and old.classic_degrade is classic.classic_degrade
