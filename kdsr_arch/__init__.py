"""KDSR networks for BasicSR.

Importing this package registers ``BlindSR_ST`` (student) and ``BlindSR_TA`` (teacher) in
BasicSR's ``ARCH_REGISTRY``. ``kdsr_model`` registers the models and losses as well.
"""
# flake8: noqa: E402
# The torchvision shim must be in place before BasicSR is imported (BasicSR 1.4.2 imports a
# module that torchvision 0.17 removed), and BasicSR must be imported before our submodules:
# the start-up hook may import kdsr_model at that point, which imports our submodules itself.
import _kdsr_torchvision

_kdsr_torchvision.install_torchvision_compat()
import basicsr

from .blindsr_arch import BlindSR_ST, BlindSR_TA, teacher_in_channels
from .checkpoint import (KDSRSpec, detect_kdsr, init_student_from_teacher, load_kdsr, load_state_dict_file,
                         transplant, unwrap_state_dict)
from .kd_ide_arch import KD_IDE
from .kdsr_arch import DAG, IDR_DCRB, IDR_DDC, KDSR
from .presets import PRESETS, build_preset, preset_options

__version__ = '0.1.0'

__all__ = [
    'BlindSR_ST', 'BlindSR_TA', 'KD_IDE', 'KDSR', 'IDR_DCRB', 'IDR_DDC', 'DAG', 'teacher_in_channels', 'KDSRSpec',
    'detect_kdsr', 'load_kdsr', 'load_state_dict_file', 'unwrap_state_dict', 'init_student_from_teacher', 'transplant',
    'PRESETS',
    'build_preset', 'preset_options', '__version__'
]
