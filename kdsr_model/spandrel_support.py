"""KDSR students in spandrel-based hosts (chaiNNer, ComfyUI...): an ``ArchSupport`` for spandrel.

    import kdsr_model.spandrel_support as kdsr_spandrel
    kdsr_spandrel.register()                       # adds KDSR to spandrel.MAIN_REGISTRY (idempotent)
    model = spandrel.ModelLoader().load_from_file('KDSRS-GAN.pth')

Detection is declarative (the key set of a KDSR student); width, depths and scale come from
tensor shapes (``kdsr_arch.checkpoint.detect_kdsr``). Teachers are not offered: they need HR.
spandrel is an optional dependency (``pip install kdsr[spandrel]``).
"""
from spandrel import MAIN_REGISTRY, Architecture, ArchSupport, ImageModelDescriptor, ModelTiling
from spandrel.util import KeyCondition

from kdsr_arch.blindsr_arch import BlindSR_ST
from kdsr_arch.checkpoint import detect_kdsr


class KDSRArch(Architecture[BlindSR_ST]):

    def __init__(self):
        super().__init__(
            id='KDSR',
            name='KDSR',
            detect=KeyCondition.has_all('G.sub_mean.weight', 'G.head.0.weight', 'G.body.0.body.0.da_conv1.kernel.0.weight',
                                        'G.body.1.weight', 'G.tail.1.weight', 'E_st.E.0.weight', 'E_st.mlp.0.weight',
                                        'E_st.compress.0.weight'))

    def load(self, state_dict):
        spec = detect_kdsr(state_dict, 'KDSR state_dict')
        return ImageModelDescriptor(
            spec.build(),
            state_dict,
            architecture=self,
            purpose='SR',
            tags=[f'{spec.n_feats}nf', f'{spec.n_sr_blocks}nb', f'{spec.n_encoder_res}er']
            + (['highpass'] if spec.extra_input else []),
            supports_half=True,
            supports_bfloat16=True,
            scale=spec.scale,
            input_channels=3,
            output_channels=3,
            # the degradation estimate is global: tiles made by a host each get their own IDR
            tiling=ModelTiling.DISCOURAGED)


def register(registry=MAIN_REGISTRY):
    """Add KDSR to a spandrel registry (default: spandrel's main one); safe to call twice."""
    return registry.add(ArchSupport.from_architecture(KDSRArch()), ignore_duplicates=True)
