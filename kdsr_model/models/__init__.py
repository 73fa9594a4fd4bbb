"""KDSR training models, registered in BasicSR's MODEL_REGISTRY under the authors' names."""
from .classic import KDSRClassicSTModel, KDSRClassicTAModel  # noqa: F401
from .kdsrgan_model import KDSRGANSTModel  # noqa: F401
from .kdsrnet_model import KDSRNetSTModel, KDSRNetTAModel  # noqa: F401

__all__ = ['KDSRClassicSTModel', 'KDSRClassicTAModel', 'KDSRGANSTModel', 'KDSRNetSTModel', 'KDSRNetTAModel']
