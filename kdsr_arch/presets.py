"""Named sizes of the paper's KDSR variants (students ``KDSR_S-*`` and teachers ``KDSR_T-*``)."""
from basicsr.utils.registry import ARCH_REGISTRY

# name -> (registered arch, constructor kwargs without the scale)
PRESETS = {
    'KDSR_S-M': ('BlindSR_ST', dict(n_feats=64, n_encoder_res=9, n_sr_blocks=53)),
    'KDSR_T-M': ('BlindSR_TA', dict(n_feats=64, n_encoder_res=9, n_sr_blocks=53)),
    'KDSR_S-L': ('BlindSR_ST', dict(n_feats=128, n_encoder_res=5, n_sr_blocks=28)),
    'KDSR_T-L': ('BlindSR_TA', dict(n_feats=128, n_encoder_res=5, n_sr_blocks=28)),
    'KDSR_S-GAN': ('BlindSR_ST', dict(n_feats=128, n_encoder_res=6, n_sr_blocks=42)),
    'KDSR_T-GAN': ('BlindSR_TA', dict(n_feats=128, n_encoder_res=6, n_sr_blocks=42)),
}


def preset_options(name, scale=4):
    """The ``network_g`` options (``type`` + kwargs) of a preset, e.g. for a YAML file."""
    if name not in PRESETS:
        raise KeyError(f'Unknown KDSR preset {name!r}; choose one of {", ".join(PRESETS)}.')
    arch, kwargs = PRESETS[name]
    return dict(type=arch, scale=scale, **kwargs)


def build_preset(name, scale=4):
    """Instantiate a preset, e.g. ``build_preset('KDSR_S-M', scale=2)``."""
    opt = preset_options(name, scale)
    return ARCH_REGISTRY.get(opt.pop('type'))(**opt)
