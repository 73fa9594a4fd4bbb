"""A plain functional KDSR forward, written from the published description and computed
straight from a state_dict: per-sample loops, no modules. Tests compare our nets with it."""
import torch
from torch.nn import functional as F


def _lrelu(x):
    return F.leaky_relu(x, 0.1)


def _conv(x, sd, name, padding=1):
    return F.conv2d(x, sd[name + '.weight'], sd.get(name + '.bias'), padding=padding)


def _linear(x, sd, name):
    return F.linear(x, sd[name + '.weight'], sd.get(name + '.bias'))


def encoder(x, sd, prefix):
    """KD-IDE: returns (idr, idr_prime)."""
    h = _lrelu(_conv(x, sd, prefix + 'E.0'))
    i = 2
    while f'{prefix}E.{i}.body.0.weight' in sd:
        h = _conv(_lrelu(_conv(h, sd, f'{prefix}E.{i}.body.0')), sd, f'{prefix}E.{i}.body.2') + h
        i += 1
    for j in range(3):  # C -> 2C -> 2C -> 4C, each followed by LeakyReLU
        h = _lrelu(_conv(h, sd, f'{prefix}E.{i + 2 * j}'))
    fea = h.mean(dim=(2, 3))
    idr_prime = _lrelu(_linear(_lrelu(_linear(fea, sd, prefix + 'mlp.0')), sd, prefix + 'mlp.2'))
    return _lrelu(_linear(idr_prime, sd, prefix + 'compress.0')), idr_prime


def dynamic_depthwise_per_sample(x, idr, w0, w2):
    """IDR-DDC one sample at a time: MLP -> C kernels of 3x3 -> depthwise conv."""
    c = x.shape[1]
    out = []
    for b in range(x.shape[0]):
        kernels = F.linear(_lrelu(F.linear(idr[b], w0)), w2).view(c, 1, 3, 3)
        out.append(F.conv2d(x[b:b + 1], kernels, padding=1, groups=c))
    return torch.cat(out, 0)


def generator(x, idr, sd, scale):
    x = _conv(x, sd, 'G.sub_mean', padding=0)
    head = _conv(x, sd, 'G.head.0')
    res = head
    i = 0
    while f'G.body.0.body.{i}.conv1.weight' in sd:
        p = f'G.body.0.body.{i}.'
        dd = dynamic_depthwise_per_sample(res, idr, sd[p + 'da_conv1.kernel.0.weight'], sd[p + 'da_conv1.kernel.2.weight'])
        res = _conv(_lrelu(dd), sd, p + 'conv1') + res
        i += 1
    res = _conv(res, sd, 'G.body.1') + head
    j = 0
    while f'G.tail.0.{j}.weight' in sd:
        res = F.pixel_shuffle(_conv(res, sd, f'G.tail.0.{j}'), 3 if scale == 3 else 2)
        j += 2
    return _conv(_conv(res, sd, 'G.tail.1'), sd, 'G.add_mean', padding=0)


def student_forward(lq, sd, scale):
    idr, idr_prime = encoder(lq, sd, 'E_st.')
    return generator(lq, idr, sd, scale), idr_prime


def teacher_forward(lq, gt, sd, scale):
    idr, idr_prime = encoder(torch.cat([lq, F.pixel_unshuffle(gt, scale)], 1), sd, 'E.')
    return generator(lq, idr, sd, scale), idr_prime
