"""The training degradation mixture and the frozen evaluation bands."""
import os
import random
import re
import subprocess

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.options import ordered_yaml

from kdsr_arch import BlindSR_TA

from kdsr_model.data.bands import BANDS, band_params, centre_crop, degrade_band
from kdsr_model.data.mixture import BRANCHES, MixtureDegrader, detail, detail_crops, mosaic, unmosaic
from kdsr_model.errors import OptionError
from kdsr_model.losses import degradation_stats
from conftest import PHOTO, SAMPLE_PHOTOS
from conftest import BIN
from conftest import _batch, _in_process, _opt_dict, _options, _psnrs, _train


def _gt_batch(n=2, size=96, seed=0):
    """Real photo crops with the kernels a RealESRGANDataset batch carries (pulses here)."""
    img = cv2.imread(SAMPLE_PHOTOS[1])[:, :, ::-1].astype(np.float32) / 255
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        t, s = rng.integers(0, img.shape[0] - size, 2)
        crops.append(torch.from_numpy(np.ascontiguousarray(img[t:t + size, s:s + size])).permute(2, 0, 1))
    pulse = torch.zeros(n, 21, 21)
    pulse[:, 10, 10] = 1
    return {'gt': torch.stack(crops), 'kernel1': pulse.clone(), 'kernel2': pulse.clone(), 'sinc_kernel': pulse.clone()}


def _mixture(gt_size=64, **mix):
    return MixtureDegrader({'scale': 4, 'gt_size': gt_size, 'degradation_mixture': mix})


@pytest.mark.parametrize('branch', BRANCHES)
def test_each_branch_gives_aligned_8bit_pairs_of_gt_size(branch):
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    deg = _mixture(**{branch: 1})
    lq, gt = deg(_gt_batch(n=3))
    assert deg.last_branch == branch
    assert lq.shape == (3, 3, 16, 16) and gt.shape == (3, 3, 64, 64)
    assert not lq.requires_grad and not gt.requires_grad
    levels = lq * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    # aligned: the LR upsampled is closer to its own GT than to a shifted copy of it
    up = torch.nn.functional.interpolate(lq, scale_factor=4, mode='bicubic').clamp(0, 1)
    own = (up - gt)[..., 8:-8, 8:-8].abs().mean()
    shifted = (up[..., 8:-8, 8:-8] - gt[..., 12:-4, 12:-4]).abs().mean()
    assert own < shifted, (own, shifted)


def test_clean_branch_is_basicsr_imresize():
    torch.manual_seed(0)
    lq, gt = _mixture(clean=1)(_gt_batch(n=2))
    for i in range(2):
        ref = imresize(gt[i], 1 / 4).clamp(0, 1)
        assert (lq[i] - ref).abs().max() <= 0.5 / 255 + 1e-6  # only the 8-bit rounding


def test_branches_are_drawn_with_their_weights():
    random.seed(1)
    torch.manual_seed(1)
    deg = _mixture(gt_size=32, clean=3, classic=1)
    batch = _gt_batch(n=1, size=32)
    counts = {b: 0 for b in BRANCHES}
    for _ in range(400):
        deg(batch)
        counts[deg.last_branch] += 1
    assert counts['realworld'] == counts['realworld_mild'] == 0
    assert 260 < counts['clean'] < 340, counts  # 300 expected


def test_classic_light_branch_uses_its_own_ranges():
    # the same draws through both classic branches: the light one (sigma, noise and JPEG
    # pinned low) stays closer to the clean LR than the default classic ranges
    gt = _gt_batch(n=4, size=64)
    clean_lq, _ = _mixture(clean=1)(gt)
    errors = {}
    for branch in ('classic', 'classic_light'):
        torch.manual_seed(3)
        random.seed(3)
        np.random.seed(3)
        deg = _mixture(**{branch: 1, 'classic_opt': {'sigma': [2.5, 3.0], 'noise': [10, 15], 'jpeg_prob': 1.0},
                          'classic_light_opt': {'sigma': [0.2, 0.3], 'noise': [0, 1], 'jpeg_prob': 0.0}})
        lq, out_gt = deg(gt)
        assert deg.last_branch == branch
        assert torch.equal(out_gt, gt['gt'])  # crops of gt_size from a gt_size batch: the batch itself
        errors[branch] = (lq - clean_lq).abs().mean().item()
    assert errors['classic_light'] < 0.02 < errors['classic'], errors


def test_gt_rescale_downscales_the_gt_but_never_below_gt_size():
    deg = _mixture(gt_size=64, clean=1, gt_rescale=[0.5, 0.5])
    out = deg._rescale(_gt_batch(n=1, size=200)['gt'])
    assert out.shape[-2:] == (100, 100)
    out = deg._rescale(_gt_batch(n=1, size=96)['gt'])
    assert out.shape[-2:] == (64, 64)  # 0.5 would give 48 < gt_size


def _flat_and_textured(n=4, size=96):
    """n - 1 flat grey images and, last, one whose right half is the sample photo's detail."""
    gt = torch.full((n, 3, size, size), 0.5)
    gt[-1, :, :, size // 2:] = _gt_batch(n=1, size=size)['gt'][0, :, :, size // 2:]
    return gt


def test_detail_crops_prefer_the_detailed_image_and_its_detailed_part():
    gt = _flat_and_textured()
    torch.manual_seed(0)
    out = detail_crops(gt, 32, prob=1, tries=16)
    assert out.shape == (4, 3, 32, 32)
    # each sample is the best of 16 positions in random images: with 4 images, all of them
    # find the textured one, and a crop inside its textured half
    richest = detail(gt[-1:, :, :, 48:]).mean()
    assert all(detail(crop[None]).mean() > 0.7 * richest for crop in out)
    torch.manual_seed(0)
    out = detail_crops(gt, 32, prob=0, tries=16)  # own image, random position
    assert torch.equal(out[:3], torch.full((3, 3, 32, 32), 0.5))


def test_detail_crops_reach_every_branch():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    batch = _gt_batch(n=4)
    batch['gt'] = _flat_and_textured(size=160)
    for branch in BRANCHES:
        deg = _mixture(gt_size=96, **{branch: 1, 'detail_crops': {'prob': 1, 'tries': 16}})
        lq, gt = deg(batch)
        assert lq.shape == (4, 3, 24, 24) and gt.shape == (4, 3, 96, 96)
        assert (detail(gt).mean((1, 2, 3)) > 0.01).all(), branch  # no flat grey crop left
        lq, gt = _mixture(gt_size=96, **{branch: 1})(batch)
        assert (detail(gt).mean((1, 2, 3)) < 1e-6).sum() == 3, branch  # without: the three flat ones


@pytest.mark.parametrize('mix,message', [
    ({'clean': 1, 'blurry': 1}, 'degradation_mixture: unknown key(s) blurry'),
    ({'clean': -1, 'classic': 1}, 'degradation_mixture:clean: a branch weight must be a number >= 0'),
    ({'clean': 0}, 'degradation_mixture: give at least one of'),
    ({'clean': 1, 'gt_rescale': [1.0, 0.5]}, 'degradation_mixture:gt_rescale: expected [low, high]'),
    ({'classic': 1, 'classic_opt': {'jpeg_range': [0, 120]}}, 'degradation_mixture:classic_opt:jpeg_range'),
    ({'classic': 1, 'classic_opt': {'sigmas': [1, 2]}}, 'degradation_mixture:classic_opt: unknown key(s) sigmas'),
    ({'classic_light': 1, 'classic_light_opt': {'noise': [6, 2]}}, 'degradation_mixture:classic_light_opt:noise'),
    ({'clean': 1, 'detail_crops': 0.5}, 'degradation_mixture:detail_crops: expected {prob: P, tries: K}'),
    ({'clean': 1, 'detail_crops': {'prob': 1.5}}, 'degradation_mixture:detail_crops:prob'),
    ({'clean': 1, 'detail_crops': {'tries': 0}}, 'degradation_mixture:detail_crops:tries'),
    ({'clean': 1, 'detail_crops': {'trys': 4}}, 'degradation_mixture:detail_crops: unknown key(s) trys'),
    ({'clean': 1, 'shared_degradation': 2}, 'degradation_mixture:shared_degradation: 1 (every crop'),
    ({'clean': 1, 'shared_degradation': True}, 'degradation_mixture:shared_degradation: 1 (every crop'),
])
def test_bad_mixture_options_name_the_key(mix, message):
    with pytest.raises(ValueError) as err:
        _mixture(**mix)
    assert message in str(err.value)


def test_mosaic_lays_out_groups_of_four_and_unmosaic_inverts_it():
    x = torch.randn(8, 3, 5, 7)
    m = mosaic(x)
    assert m.shape == (2, 3, 10, 14)
    assert torch.equal(m[0, :, :5, :7], x[0]) and torch.equal(m[0, :, :5, 7:], x[1])
    assert torch.equal(m[0, :, 5:, :7], x[2]) and torch.equal(m[1, :, 5:, 7:], x[7])
    assert torch.equal(unmosaic(m), x)


def _group_disagreement(branch, shared):
    """How far the residual energy of the LR (:func:`degradation_stats`) varies within groups of
    4 crops cut from one place of the photo, against its spread over the batch. The real-world
    branches here add noise alone (resizing and a second blur off, pulse kernels, JPEG 95):
    what differs between crops of one place is then the drawn noise level."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    batch = _gt_batch(n=16, size=128)
    batch['gt'] = batch['gt'][::4].repeat_interleave(4, 0)  # each group of 4: one crop, 4 times
    noisy = dict(resize_prob=[0, 0, 1], resize_prob2=[0, 0, 1], second_blur_prob=0, gaussian_noise_prob=1,
                 gaussian_noise_prob2=1, noise_range=[1, 30], noise_range2=[1, 30], jpeg_range=[95, 95],
                 jpeg_range2=[95, 95])
    mix = {branch: 1, 'shared_degradation': shared, 'mild_opt': noisy}
    deg = MixtureDegrader({'scale': 4, 'gt_size': 128, **noisy, 'degradation_mixture': mix})
    lq, gt = deg(batch)
    assert lq.shape == (16, 3, 32, 32) and gt.shape == (16, 3, 128, 128)
    assert torch.equal(gt[::4].repeat_interleave(4, 0), gt)  # the GT is split back in place
    residual = degradation_stats(lq, gt)[:, 0].view(4, 4)
    return float(residual.std(1).mean() / residual.std())


def test_shared_degradation_refuses_a_batch_not_made_of_groups():
    """Without datasets:train in the options the size is checked on the batch itself, with the same words."""
    deg = _mixture(gt_size=32, clean=1, shared_degradation=4)
    with pytest.raises(ValueError, match=re.escape('shared_degradation: 4 needs a batch size per GPU divisible by 4, '
                                                   'got 6; change datasets:train:batch_size_per_gpu.')):
        deg(_gt_batch(n=6, size=64))
    lq, gt = deg(_gt_batch(n=8, size=64))
    assert lq.shape == (8, 3, 8, 8) and gt.shape == (8, 3, 32, 32)


@pytest.mark.parametrize('branch', ['classic', 'classic_light', 'realworld_mild', 'realworld'])
def test_shared_degradation_gives_a_group_one_draw(branch):
    shared, own = _group_disagreement(branch, 4), _group_disagreement(branch, 1)
    assert shared < 0.2 and own > 0.5, (shared, own)  # own draws vary within a group as across the batch


def test_shared_degradation_degrades_a_group_as_one_image():
    """Without noise and JPEG, the crops of a group cut from one place get one LR, but near the seams."""
    torch.manual_seed(0)
    batch = _gt_batch(n=8, size=128)
    batch['gt'] = batch['gt'][::4].repeat_interleave(4, 0)
    lq, _ = _mixture(gt_size=128, classic=1, shared_degradation=4,
                     classic_opt={'noise': [0, 0], 'jpeg_prob': 0})(batch)
    centre = lq[..., 8:-8, 8:-8].reshape(2, 4, 3, 16, 16)  # away from the seams
    assert (centre - centre[:, :1]).abs().max() * 255 < 0.5
    assert (centre[0] - centre[1]).abs().mean() * 255 > 5  # the two groups: other photos' places, other draws


def test_pair_pool_keeps_groups_that_share_a_degradation_together(tmp_path, prepared):  # noqa: F811
    mix = {'clean': 1, 'shared_degradation': 4}
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'degradation_mixture': mix,
                                                                              'queue_size': 16})
    opt['datasets']['train']['batch_size_per_gpu'] = 8
    model = build_model(opt)
    torch.manual_seed(0)
    seen = set()
    for step in range(12):
        marker = (2 * step + torch.arange(8) // 4).float()  # two groups of 4 a batch, one marker each
        model.lq = marker.view(8, 1, 1, 1).expand(8, 3, 4, 4).clone()
        model.gt = marker.view(8, 1, 1, 1).expand(8, 3, 16, 16).clone()
        model._dequeue_and_enqueue()
        out = model.lq[:, 0, 0, 0].view(2, 4)
        assert torch.equal(out, out[:, :1].expand(2, 4)), (step, out)  # whole groups, never split
        assert torch.equal(model.gt[:, 0, 0, 0].view(2, 4), out)  # pairs stay pairs
        seen.update(out[:, 0].tolist())
    assert len(seen) > 12  # shuffled: more than the two newest groups come back


@pytest.mark.parametrize('change,message', [
    ({'train': {'idr_group_opt': {'type': 'IDRGroupLoss'}}},
     'train:idr_group_opt: needs crops that share a degradation; add degradation_mixture:shared_degradation: 4'),
    ({'top': {'degradation_mixture': {'clean': 1, 'shared_degradation': 4}}},
     'shared_degradation: 4 needs a batch size per GPU divisible by 4, got 2; change datasets:train:batch_size_per_gpu'),
])
def test_group_loss_and_shared_degradation_misuse(tmp_path, prepared, change, message):  # noqa: F811
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, **change)
    with pytest.raises(OptionError, match=re.escape(message)):
        build_model(opt)


def test_model_with_a_mixture_synthesises_and_names_bad_keys(tmp_path, prepared):  # noqa: F811
    mix = {'clean': 1, 'classic': 1, 'realworld_mild': 1, 'realworld': 1, 'gt_rescale': [0.5, 1.0]}
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'degradation_mixture': mix})
    model = build_model(opt)
    assert isinstance(model.degrader, MixtureDegrader)
    model.feed_data(_batch(opt, 2))
    assert model.lq.shape == (2, 3, 16, 16) and model.gt.shape == (2, 3, 64, 64)
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'degradation_mixture': {'clean': 'x'}})
    with pytest.raises(OptionError, match='degradation_mixture:clean'):
        build_model(opt)


@pytest.mark.slow
def test_kdsr_train_with_a_mixture(tmp_path, prepared):  # noqa: F811
    mix = {'clean': 0.4, 'classic': 0.3, 'realworld_mild': 0.2, 'realworld': 0.1, 'gt_rescale': [0.5, 1.0]}
    opt_file, name = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'degradation_mixture': mix})
    log = _train(opt_file, tmp_path)
    assert len(_psnrs(log)) >= 2  # validated during the run
    assert (tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_kdsr_train_student_with_shared_degradations_group_and_relation_losses(tmp_path, prepared):  # noqa: F811
    teacher = tmp_path / 'teacher.pth'
    net = BlindSR_TA(n_feats=16, n_encoder_res=2, scale=4, n_sr_blocks=4)
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, teacher)
    mix = {'clean': 1, 'classic': 1, 'realworld': 1, 'shared_degradation': 4}
    opt = _opt_dict('train_kdsrnet_x4ST_tiny.yml', prepared, pretrain_network_g=str(teacher),
                    pretrain_network_TA=str(teacher), top={'degradation_mixture': mix, 'queue_size': 8},
                    train={'idr_group_opt': {'type': 'IDRGroupLoss', 'loss_weight': 0.5},
                           'kd_relation_opt': {'type': 'KDRelationLoss', 'loss_weight': 1.0}})
    opt['datasets']['train']['batch_size_per_gpu'] = 4
    opt_file = tmp_path / 'group.yml'
    opt_file.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
    log = _train(opt_file, tmp_path)
    groups = [float(v) for v in re.findall(r'l_group: ([\d.e+-]+)', log)]
    assert groups and all(0 < g < 0.5 * 1.5 for g in groups), log[-2000:]  # logged, and a ratio (weighted)
    assert len(re.findall(r'l_kd_rel: [\d.e+-]+', log)) == len(groups)
    assert (tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth').is_file()


# ----------------------------------------------------------------- bands


def _hr():
    return centre_crop(cv2.imread(os.path.join(os.path.dirname(SAMPLE_PHOTOS[1]), PHOTO)), 96)


def test_bands_are_seeded_per_photo_and_ordered_by_strength():
    hr = _hr()
    assert hr.shape == (96, 96, 3)
    bic = {}
    for band in BANDS:
        lr = degrade_band(hr, band, PHOTO)
        assert lr.shape == (24, 24, 3) and lr.dtype == np.uint8
        assert np.array_equal(lr, degrade_band(hr, band, PHOTO))  # same bytes every time
        up = cv2.resize(lr, (96, 96), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        bic[band] = np.abs(up - hr).mean()
    assert bic['clean'] < bic['mild'] < bic['heavy'], bic
    assert band_params('mild', 'a.png') != band_params('mild', 'b.png')
    assert np.array_equal(degrade_band(hr, 'clean', 'a.png'), degrade_band(hr, 'clean', 'b.png'))
    ref = imresize(torch.from_numpy(hr[:, :, ::-1].astype(np.float64) / 255).permute(2, 0, 1), 1 / 4)
    ref = (ref.clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(degrade_band(hr, 'clean', PHOTO) - ref).max() <= 1


def test_bands_refuse_a_size_not_divisible_by_4():
    with pytest.raises(ValueError, match='x.png: HR size 95x96 is not divisible by 4'):
        degrade_band(_hr()[:, :95], 'clean', 'x.png')
    with pytest.raises(ValueError, match="band 'soft'"):
        band_params('soft', 'x.png')


def test_testset_writes_the_bands(tmp_path):
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'photo.png'), cv2.imread(SAMPLE_PHOTOS[1]))
    proc = subprocess.run([os.path.join(BIN, 'kdsr-testset'), '--hr', str(hr), '--out', str(tmp_path / 'o'),
                           '--protocol', 'bands', '--crop', '96'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    gt = cv2.imread(str(tmp_path / 'o' / 'HR' / 'photo.png'))
    assert np.array_equal(gt, centre_crop(cv2.imread(SAMPLE_PHOTOS[1]), 96))
    for band in BANDS:
        assert np.array_equal(cv2.imread(str(tmp_path / 'o' / band / 'photo.png')), degrade_band(gt, band, 'photo.png'))
