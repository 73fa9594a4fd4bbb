"""The optional encoder inputs that expose the degradation: the teacher's residual_input and the
student's highpass_input (kdsr_arch), their detection from shapes, and transplant()."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdsr_arch import BlindSR_ST, BlindSR_TA, KDSRSpec, detect_kdsr, load_kdsr
from kdsr_arch import transplant
from kdsr_model.upscaler import KDSRUpscaler

SMALL = dict(n_feats=8, n_encoder_res=2, n_sr_blocks=3)


def _perturbed(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def _clean_pair(scale=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(12 * scale, 12 * scale), mode='bicubic')
    gt = gt.clamp(0, 1)
    lq = F.interpolate(gt, scale_factor=1 / scale, mode='bicubic', antialias=True, align_corners=False)
    return lq, gt


def test_residual_input_is_zero_on_a_clean_pair_and_shows_noise():
    net = BlindSR_TA(scale=4, residual_input=True, **SMALL)
    assert net.E.E[0].in_channels == 3 + 48 + 6
    lq, gt = _clean_pair()
    x = net.encoder_input(lq, gt)
    assert x.shape[1] == 57
    assert torch.equal(x[:, :3], lq) and torch.equal(x[:, 3:51], F.pixel_unshuffle(gt, 4))
    assert x[:, 51:].abs().max() < 1e-4  # LR is exactly the clean downscale: nothing to show
    noisy = lq + 0.05 * torch.randn(lq.shape, generator=torch.Generator().manual_seed(1))
    r = net.encoder_input(noisy, gt)[:, 51:]
    assert torch.allclose(r[:, :3], 10 * (noisy - lq), atol=1e-4)  # the scaled residual
    assert torch.allclose(r[:, 3:], r[:, :3]**2)  # and its energy
    assert r[:, 3:].mean() > 0.2  # sigma 0.05 -> E[(10 r)^2] = 0.25
    # the paper's teacher is unchanged
    assert BlindSR_TA(scale=4, **SMALL).encoder_input(lq, gt).shape[1] == 51


def test_highpass_input_lifts_the_lr_and_widens_the_receptive_radius():
    plain, hp = BlindSR_ST(scale=2, **SMALL), BlindSR_ST(scale=2, highpass_input=True, **SMALL)
    assert hp.E_st.E[0].in_channels == 9
    assert hp.encoder.receptive_radius == plain.encoder.receptive_radius + 1
    flat = torch.full((1, 3, 10, 10), 0.3)
    assert hp.E_st.lift(flat)[:, 3:].abs().max() < 1e-5  # no detail, no energy
    noisy = flat + 0.1 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
    assert hp.E_st.lift(noisy)[:, 6:].mean() > 0.3


@pytest.mark.parametrize('arch,kwarg', [('BlindSR_ST', 'highpass_input'), ('BlindSR_TA', 'residual_input')])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_extra_inputs_are_detected_from_shapes(arch, kwarg, scale):
    net = {'BlindSR_ST': BlindSR_ST, 'BlindSR_TA': BlindSR_TA}[arch](scale=scale, **{kwarg: True}, **SMALL)
    spec = detect_kdsr(net.state_dict())
    assert spec == KDSRSpec(arch, 8, 2, scale, 3, extra_input=True)
    assert spec.options()[kwarg] is True
    rebuilt = spec.build()
    assert getattr(rebuilt.encoder, 'highpass_input') == (kwarg == 'highpass_input')
    assert getattr(rebuilt, 'residual_input', False) == (kwarg == 'residual_input')
    plain = detect_kdsr({'BlindSR_ST': BlindSR_ST, 'BlindSR_TA': BlindSR_TA}[arch](scale=scale, **SMALL).state_dict())
    assert kwarg not in plain.options() and not plain.extra_input


def test_an_encoder_input_of_no_known_width_names_both_choices():
    sd = BlindSR_ST(scale=4, **SMALL).state_dict()
    sd['E_st.E.0.weight'] = torch.zeros(8, 5, 3, 3)
    with pytest.raises(ValueError, match=r's\.pth: encoder input has 5 channels, expected 3 \(or 9 with highpass_input\)'):
        detect_kdsr(sd, source='s.pth')


@pytest.mark.parametrize('target', [KDSRSpec('BlindSR_TA', 8, 2, 4, 3, True), KDSRSpec('BlindSR_TA', 8, 2, 4, 3),
                                    KDSRSpec('BlindSR_ST', 8, 2, 4, 3, True)])
def test_transplant_from_a_student_starts_with_its_output(target):
    student = _perturbed(BlindSR_ST(scale=4, **SMALL))
    net, spec = load_kdsr(transplant(student.state_dict(), target))
    assert spec == target
    lq, gt = torch.rand(2, 3, 9, 7), torch.rand(2, 3, 36, 28)
    with torch.no_grad():
        expected = student(lq)
        got = net.eval()(lq, gt) if spec.is_teacher else net.eval()(lq)
    assert torch.equal(got, expected)  # the new input channels start at zero weight
    first = net.encoder.E[0].weight
    assert first[:, 3:].abs().sum() == 0 and torch.equal(first[:, :3], student.E_st.E[0].weight)


def test_transplant_keeps_the_hr_weights_between_teachers_and_refuses_other_sizes():
    teacher = _perturbed(BlindSR_TA(scale=4, **SMALL))
    state = transplant(teacher.state_dict(), KDSRSpec('BlindSR_TA', 8, 2, 4, 3, True))
    assert torch.equal(state['E.E.0.weight'][:, :51], teacher.E.E[0].weight)
    assert state['E.E.0.weight'][:, 51:].abs().sum() == 0
    with pytest.raises(ValueError, match='t.pth: .* cannot be transplanted .* must agree'):
        transplant(teacher.state_dict(), KDSRSpec('BlindSR_TA', 16, 2, 4, 3, True), source='t.pth')


def test_transplant_with_a_generator_drives_that_generator_with_the_students_idr():
    student = _perturbed(BlindSR_ST(scale=4, highpass_input=True, **SMALL), seed=1)
    teacher = _perturbed(BlindSR_TA(scale=4, residual_input=True, **SMALL), seed=2)
    target = KDSRSpec('BlindSR_ST', 8, 2, 4, 3, True)
    net, spec = load_kdsr(transplant(student.state_dict(), target, generator=teacher.state_dict()))
    assert spec == target
    lq = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        idr = student.encode(lq)[0]
        assert torch.equal(net.eval()(lq), teacher.upsample(lq, idr))  # the teacher's G, the student's IDR
        assert not torch.equal(net(lq), student(lq))
    with pytest.raises(ValueError, match='g.pth: .* cannot be transplanted .* must agree'):
        transplant(student.state_dict(), target, generator=BlindSR_TA(scale=4, n_feats=16, n_encoder_res=2,
                                                                      n_sr_blocks=3).state_dict(),
                   generator_source='g.pth')


def test_a_highpass_student_upscales_and_its_tiled_idr_equals_the_whole(tmp_path):
    net = _perturbed(BlindSR_ST(scale=2, highpass_input=True, **SMALL))
    path = tmp_path / 'hp.pth'
    torch.save({'params_ema': net.state_dict()}, path)
    up = KDSRUpscaler(str(path), device='cpu')
    g = torch.Generator().manual_seed(3)
    lq = F.interpolate(torch.rand(1, 3, 20, 24, generator=g), size=(60, 70), mode='bilinear')
    whole = up.idr(lq, tile=0)
    assert torch.allclose(up.idr(lq, tile=24), whole, rtol=1e-5, atol=1e-6)  # tiles padded by radius incl. the high-pass
    out = up.enhance((lq[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))[0]
    assert out.shape == (120, 140, 3)


@pytest.mark.parametrize('shape', [(1, 1), (1, 5), (4, 1), (2, 2)])
def test_the_high_pass_takes_images_of_one_pixel(shape):
    enc = BlindSR_ST(scale=2, highpass_input=True, **SMALL).eval().E_st
    x = torch.rand(1, 3, *shape)
    idr, _ = enc(x)
    assert idr.shape == (1, 8) and torch.isfinite(idr).all()
