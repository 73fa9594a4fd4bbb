"""Per-image metrics: PSNR / SSIM on Y (BasicSR's), LPIPS with a backbone from a local file."""
import os
import warnings

import torch
from basicsr.metrics import calculate_psnr, calculate_ssim

from ..errors import MissingFileError, OptionError
from ..io import first_line
from .methods import to_tensor

# LPIPS backbones by the kernel size of torchvision's first conv (features.0.weight)
LPIPS_NETS = {11: ('alex', 'AlexNet'), 3: ('vgg', 'VGG16')}


def load_lpips(weights, device):
    """LPIPS (the ``lpips`` package, its own linear layers) with a backbone from a local torchvision file.

    Args:
        weights (str): torchvision ``alexnet`` or ``vgg16`` weights (e.g. ``alexnet-owt-7be5be79.pth``,
            ``vgg16-397923af.pth``); the backbone is chosen by the file.
        device (torch.device): Where LPIPS runs.

    Returns:
        tuple: ``(lpips.LPIPS module in eval mode, 'alex' | 'vgg')``.
    """
    if not os.path.isfile(weights):
        raise MissingFileError(f'--lpips-weights {weights}: file not found (torchvision alexnet or vgg16 weights).')
    try:
        import lpips
    except ImportError:
        raise OptionError("--lpips-weights: LPIPS needs the lpips package: pip install 'kdsr[lpips]'.") from None
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors all mean the same to a user
        reason = first_line(err)
        raise OptionError(f'--lpips-weights {weights}: not a loadable PyTorch weights file ({reason}).') from None
    first = state.get('features.0.weight') if isinstance(state, dict) else None
    net = LPIPS_NETS.get(first.shape[-1]) if torch.is_tensor(first) and first.ndim == 4 else None
    if net is None:
        raise OptionError(f'--lpips-weights {weights}: not torchvision AlexNet or VGG16 weights '
                          '(no features.0.weight with an 11x11 or 3x3 kernel).')
    with warnings.catch_warnings():  # torchvision's deprecation warning for lpips's pretrained=False backbone
        warnings.simplefilter('ignore')
        model = lpips.LPIPS(net=net[0], pretrained=True, pnet_rand=True, verbose=False)
    backbone = {}
    for key, value in model.net.state_dict().items():  # 'slice2.3.weight' <- torchvision 'features.3.weight'
        src = 'features.' + key.split('.', 1)[1]
        if src not in state or state[src].shape != value.shape:
            raise OptionError(f'--lpips-weights {weights}: {src} missing or of another shape; torchvision '
                              f'{net[1]} weights expected.')
        backbone[key] = state[src]
    model.net.load_state_dict(backbone, strict=True)
    return model.eval().to(device), net[0]


def image_metrics(sr, gt, crop, lpips_model=None):
    """PSNR and SSIM (BasicSR, Y channel, ``crop`` border pixels off) and optionally LPIPS.

    Args:
        sr (ndarray): H x W x 3 BGR uint8.
        gt (ndarray): H x W x 3 BGR uint8.
        crop (int): Border pixels left out of PSNR/SSIM.
        lpips_model (nn.Module | None): From :func:`load_lpips`.

    Returns:
        dict: ``{'psnr', 'ssim'}`` (+ ``'lpips'``) as floats.
    """
    out = {
        'psnr': float(calculate_psnr(sr, gt, crop, test_y_channel=True)),
        'ssim': float(calculate_ssim(sr, gt, crop, test_y_channel=True))
    }
    if lpips_model is not None:
        device = next(lpips_model.parameters()).device
        with torch.inference_mode():
            out['lpips'] = float(lpips_model(to_tensor(sr, device) * 2 - 1, to_tensor(gt, device) * 2 - 1).item())
    return out
