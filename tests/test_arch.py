import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import reference_kdsr as ref
from kdsr_arch import IDR_DDC, PRESETS, BlindSR_ST, BlindSR_TA, build_preset, preset_options

SMALL = dict(n_feats=8, n_encoder_res=2, n_sr_blocks=3)


def _inputs(scale, b=2, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(b, 3, h, w, generator=g)
    gt = torch.rand(b, 3, h * scale, w * scale, generator=g)
    return lq, gt


def test_registered_under_authors_names():
    assert ARCH_REGISTRY.get('BlindSR_ST') is BlindSR_ST
    assert ARCH_REGISTRY.get('BlindSR_TA') is BlindSR_TA


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_student_shapes_train_and_eval(scale):
    net = BlindSR_ST(scale=scale, **SMALL)
    lq, _ = _inputs(scale)
    sr, idr_prime = net.train()(lq)
    assert sr.shape == (2, 3, 6 * scale, 5 * scale)
    assert isinstance(idr_prime, list) and len(idr_prime) == 1 and idr_prime[0].shape == (2, 4 * 8)
    out = net.eval()(lq)
    assert torch.is_tensor(out) and out.shape == sr.shape


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_teacher_shapes_train_and_eval(scale):
    net = BlindSR_TA(scale=scale, **SMALL)
    assert net.E.E[0].in_channels == 3 + 3 * scale * scale
    lq, gt = _inputs(scale)
    sr, idr_prime = net.train()(lq, gt)
    assert sr.shape == gt.shape and idr_prime[0].shape == (2, 32)
    assert net.eval()(lq, gt).shape == gt.shape


def test_teacher_rejects_gt_of_wrong_size():
    net = BlindSR_TA(scale=4, **SMALL)
    lq, gt = _inputs(4)
    with pytest.raises(ValueError, match='GT must be 24x20'):
        net(lq, gt[..., :-1])


@pytest.mark.parametrize('scale', [1, 5, 6])
def test_unsupported_scale_is_a_clear_error(scale):
    with pytest.raises(ValueError, match=f'scale={scale}'):
        BlindSR_ST(scale=scale, **SMALL)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_student_equals_functional_reference(scale):
    net = BlindSR_ST(scale=scale, **SMALL).train()
    lq, _ = _inputs(scale, b=3)
    with torch.no_grad():
        sr, idr_prime = net(lq)
        sr_ref, idr_prime_ref = ref.student_forward(lq, net.state_dict(), scale)
    torch.testing.assert_close(sr, sr_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(idr_prime[0], idr_prime_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_teacher_equals_functional_reference(scale):
    net = BlindSR_TA(scale=scale, **SMALL).train()
    lq, gt = _inputs(scale, b=3)
    with torch.no_grad():
        sr, idr_prime = net(lq, gt)
        sr_ref, idr_prime_ref = ref.teacher_forward(lq, gt, net.state_dict(), scale)
    torch.testing.assert_close(sr, sr_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(idr_prime[0], idr_prime_ref, rtol=0, atol=1e-6)


def test_batched_idr_ddc_equals_per_sample_reference():
    torch.manual_seed(1)
    ddc = IDR_DDC(16)
    x = torch.randn(5, 16, 11, 9)
    idr = torch.randn(5, 16)
    with torch.no_grad():
        out = ddc(x, idr)
        expected = ref.dynamic_depthwise_per_sample(x, idr, ddc.kernel[0].weight, ddc.kernel[2].weight)
    assert (out - expected).abs().max().item() <= 1e-6


def test_idr_ddc_runs_one_grouped_conv_for_the_whole_batch(monkeypatch):
    calls = []
    real_conv2d = torch.nn.functional.conv2d

    def counting_conv2d(x, w, *args, **kwargs):
        calls.append((tuple(x.shape), kwargs.get('groups')))
        return real_conv2d(x, w, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'conv2d', counting_conv2d)
    ddc = IDR_DDC(4)
    ddc(torch.randn(3, 4, 5, 5), torch.randn(3, 4))
    assert calls == [((1, 12, 5, 5), 12)]


def test_channels_last_input_gives_the_same_output():
    net = BlindSR_ST(scale=4, **SMALL).eval()
    lq, _ = _inputs(4, b=2, h=8, w=8)
    with torch.no_grad():
        expected = net(lq)
        got = net.to(memory_format=torch.channels_last)(lq.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_nets_choose_channels_last_on_cpu_in_eval_and_match_nchw():
    net = BlindSR_ST(scale=4, **SMALL)
    lq, _ = _inputs(4, b=1, h=8, w=8)  # one image, as inference runs (a batch folds into one grouped conv)
    layouts = []
    hooks = [m.register_forward_pre_hook(lambda m, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last))) for m in net.modules()
             if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size == (3, 3)]
    with torch.no_grad():
        net.train()  # training keeps the caller's layout (autograd, DDP)
        nchw, _ = net(lq)
        assert layouts and not any(layouts)
        layouts.clear()
        fast = net.eval()(lq)
        assert layouts and all(layouts)
    for h in hooks:
        h.remove()
    assert fast.is_contiguous()  # handed back in the default layout
    torch.testing.assert_close(fast, nchw, rtol=0, atol=1e-5)
    batch, _ = _inputs(4, b=3, h=8, w=8)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(batch), net.train()(batch)[0], rtol=0, atol=1e-5)


def test_encode_then_upsample_equals_forward():
    student = BlindSR_ST(scale=3, **SMALL).eval()
    teacher = BlindSR_TA(scale=3, **SMALL).eval()
    lq, gt = _inputs(3)
    with torch.no_grad():
        idr, idr_prime = student.encode(lq)
        assert idr.shape == (2, 8) and idr_prime[0].shape == (2, 32)
        torch.testing.assert_close(student.upsample(lq, idr), student(lq), rtol=0, atol=0)
        t_idr, _ = teacher.encode(lq, gt)
        torch.testing.assert_close(teacher.upsample(lq, t_idr), teacher(lq, gt), rtol=0, atol=0)


@pytest.mark.parametrize('cls', [BlindSR_ST, BlindSR_TA])
def test_gradients_reach_every_trainable_parameter(cls):
    net = cls(scale=2, **SMALL).train()
    lq, gt = _inputs(2)
    sr, idr_prime = net(lq) if cls is BlindSR_ST else net(lq, gt)
    (torch.nn.functional.l1_loss(sr, gt) + idr_prime[0].abs().mean()).backward()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {'G.sub_mean.weight', 'G.sub_mean.bias', 'G.add_mean.weight', 'G.add_mean.bias'}
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('scale', [2, 3, 4, 8])
@pytest.mark.parametrize('name', sorted(PRESETS))
def test_every_preset_at_every_scale_runs_and_trains(name, scale):
    """timm-style: each preset at each scale builds from its options, runs forward in training
    and eval mode with finite outputs of the right shapes, and a loss reaches every parameter."""
    torch.manual_seed(0)
    opt = preset_options(name, scale)
    net = ARCH_REGISTRY.get(opt.pop('type'))(**opt).train()
    lq, gt = _inputs(scale, b=1, h=5, w=4)
    args = (lq, gt) if name.startswith('KDSR_T') else (lq, )
    sr, idr_prime = net(*args)
    assert sr.shape == gt.shape and torch.isfinite(sr).all()
    assert idr_prime[0].shape == (1, 4 * opt['n_feats']) and torch.isfinite(idr_prime[0]).all()
    (torch.nn.functional.l1_loss(sr, gt) + idr_prime[0].abs().mean()).backward()
    silent = [n for n, p in net.named_parameters()
              if p.requires_grad and not (p.grad is not None and p.grad.abs().sum() > 0)]
    assert not silent
    with torch.no_grad():
        out = net.eval()(*args)
    assert out.shape == gt.shape and torch.isfinite(out).all()
    assert net.G.receptive_radius == 2 * opt['n_sr_blocks'] + 4


def test_mean_shift_matches_the_authors_constants():
    g = BlindSR_ST(**SMALL).G
    mean = torch.tensor([0.4488, 0.4371, 0.4040])
    torch.testing.assert_close(g.sub_mean.weight.flatten(1), torch.eye(3))
    torch.testing.assert_close(g.sub_mean.bias, -mean)
    torch.testing.assert_close(g.add_mean.bias, mean)


# Exact counts from instantiating the authors' classes (REFERENCE.md section 2).
EXPECTED_PARAMS = {
    ('KDSR_S-GAN', 4): 18_846_107,
    ('KDSR_T-GAN', 4): 18_901_403,
    ('KDSR_S-M', 4): 5_795_099,
    ('KDSR_T-M', 4): 5_822_747,
    ('KDSR_S-L', 4): 14_191_003,
    ('KDSR_T-L', 4): 14_246_299,
    ('KDSR_S-M', 2): 5_647_387,
    ('KDSR_S-M', 3): 5_832_027,
}


def test_every_preset_has_its_published_parameter_count():
    assert {name for name, _ in EXPECTED_PARAMS} == set(PRESETS)
    for (name, scale), expected in EXPECTED_PARAMS.items():
        net = build_preset(name, scale=scale)
        assert sum(p.numel() for p in net.parameters()) == expected, (name, scale)


def test_gan_student_parts_and_trainable_count():
    net = build_preset('KDSR_S-GAN')
    assert sum(p.numel() for p in net.G.parameters()) == 14_415_131
    assert sum(p.numel() for p in net.E_st.parameters()) == 4_430_976
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 18_846_083


def test_preset_options_are_yaml_ready():
    assert preset_options('KDSR_S-L', scale=2) == dict(type='BlindSR_ST', scale=2, n_feats=128, n_encoder_res=5,
                                                       n_sr_blocks=28)
    with pytest.raises(KeyError, match='KDSR_S-XL'):
        preset_options('KDSR_S-XL')


def _authors_gan_student_keys(enc='E_st', c=128, r=6, n=42, cin=3):
    """The key -> shape table of the authors' KDSR-GAN student (REFERENCE.md section 2)."""
    keys = {}
    for ms in ('sub_mean', 'add_mean'):
        keys[f'G.{ms}.weight'], keys[f'G.{ms}.bias'] = (3, 3, 1, 1), (3, )
    keys['G.head.0.weight'], keys['G.head.0.bias'] = (c, 3, 3, 3), (c, )
    for i in range(n):
        p = f'G.body.0.body.{i}.'
        keys[p + 'da_conv1.kernel.0.weight'] = (c, c)
        keys[p + 'da_conv1.kernel.2.weight'] = (9 * c, c)
        keys[p + 'conv1.weight'], keys[p + 'conv1.bias'] = (c, c, 3, 3), (c, )
    keys['G.body.1.weight'], keys['G.body.1.bias'] = (c, c, 3, 3), (c, )
    for j in (0, 2):
        keys[f'G.tail.0.{j}.weight'], keys[f'G.tail.0.{j}.bias'] = (4 * c, c, 3, 3), (4 * c, )
    keys['G.tail.1.weight'], keys['G.tail.1.bias'] = (3, c, 3, 3), (3, )
    keys[f'{enc}.E.0.weight'], keys[f'{enc}.E.0.bias'] = (c, cin, 3, 3), (c, )
    for i in range(2, 2 + r):
        for j in (0, 2):
            keys[f'{enc}.E.{i}.body.{j}.weight'], keys[f'{enc}.E.{i}.body.{j}.bias'] = (c, c, 3, 3), (c, )
    for idx, (o, i) in zip((2 + r, 4 + r, 6 + r), ((2 * c, c), (2 * c, 2 * c), (4 * c, 2 * c))):
        keys[f'{enc}.E.{idx}.weight'], keys[f'{enc}.E.{idx}.bias'] = (o, i, 3, 3), (o, )
    for j in (0, 2):
        keys[f'{enc}.mlp.{j}.weight'], keys[f'{enc}.mlp.{j}.bias'] = (4 * c, 4 * c), (4 * c, )
    keys[f'{enc}.compress.0.weight'], keys[f'{enc}.compress.0.bias'] = (c, 4 * c), (c, )
    return keys


@pytest.mark.parametrize('preset,enc,cin', [('KDSR_S-GAN', 'E_st', 3), ('KDSR_T-GAN', 'E', 51)])
def test_state_dict_keys_and_shapes_are_the_authors(preset, enc, cin):
    sd = build_preset(preset).state_dict()
    expected = _authors_gan_student_keys(enc=enc, cin=cin)
    assert len(sd) == 220
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert not list(build_preset(preset).buffers())


def test_classic_m_student_key_layout():
    sd = build_preset('KDSR_S-M').state_dict()
    assert len(sd) == 276
    assert 'E_st.E.15.weight' in sd and 'E_st.E.16.weight' not in sd  # R=9: last conv at E.15
    assert sd['E_st.E.15.weight'].shape == (256, 128, 3, 3)
