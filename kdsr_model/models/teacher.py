"""Teacher handling shared by the student models: build, load, freeze, and start the student."""
import os

import torch
from basicsr.archs import build_network
from basicsr.utils import get_root_logger

from kdsr_arch.checkpoint import detect_kdsr, init_student_from_teacher, load_state_dict_file

from ..errors import MissingFileError, OptionError
from .loading import basicsr_param_key


def _teacher_key(opt):
    """Which entry of the teacher file to read: ``param_key_TA``, else params_ema/params (auto).

    The authors read it with ``param_key_g``, which BasicSR rewrites to 'params' on resume, so
    a resumed run would silently switch teacher weights; 'auto' keeps them stable.
    """
    return opt['path'].get('param_key_TA', 'auto')


def _read_kdsr(path, key, option):
    """``(state_dict, KDSRSpec)`` of a KDSR checkpoint; an OptionError naming ``option`` if unreadable."""
    try:
        state = load_state_dict_file(path, key)
        return state, detect_kdsr(state, path)
    except (ValueError, KeyError) as err:
        raise OptionError(f'{option}: {err}') from None


def build_frozen_teacher(opt, device, student_scale):
    """Build ``network_TA``, load ``path:pretrain_network_TA`` strictly, freeze it (eval, no grad)."""
    if opt.get('network_TA') is None:
        raise OptionError('network_TA: the student needs its teacher; add a network_TA section (type: BlindSR_TA).')
    path = opt['path'].get('pretrain_network_TA')
    if not path:
        raise OptionError('path:pretrain_network_TA: the student needs the trained teacher checkpoint; set it.')
    if not os.path.isfile(path):
        if os.path.basename(path).startswith('net_TA_') and opt['path'].get('resume_state'):
            raise MissingFileError('path:pretrain_network_TA: on resume BasicSR pointed it at the (never saved) '
                                   f'{path}; add "ignore_resume_networks: network_TA" to the path section.')
        raise MissingFileError(f'path:pretrain_network_TA: teacher checkpoint {path} not found; train the teacher '
                               'first (options/train_kdsrnet_x4TA.yml) or fix the path.')
    teacher = build_network(opt['network_TA'])
    if teacher.scale != student_scale:
        raise OptionError(f'network_TA: teacher scale x{teacher.scale} differs from the student scale '
                          f'x{student_scale}; use one scale for both.')
    state, spec = _read_kdsr(path, _teacher_key(opt), 'path:pretrain_network_TA')
    if not spec.is_teacher:
        raise OptionError(f'path:pretrain_network_TA: {path} holds a student (BlindSR_ST), not a teacher.')
    try:
        teacher.load_state_dict(state, strict=True)
    except RuntimeError:
        raise OptionError(f'path:pretrain_network_TA: {path} is a teacher with {spec.options()}, which does not match '
                          f'network_TA {opt["network_TA"]}.') from None
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad = False
    get_root_logger().info(f'Teacher loaded from {path} (frozen).')
    return teacher


def take_teacher_init(opt):
    """If ``path:pretrain_network_g`` names a teacher file, remove it from the options (so that
    BasicSR does not load it with strict=False) and return ``(path, state_dict)``, read once;
    else return None."""
    path = opt['path'].get('pretrain_network_g')
    if not path:
        return None
    if not os.path.isfile(path):
        raise MissingFileError(f'path:pretrain_network_g: {path} not found; fix the path or set it to ~.')
    state, spec = _read_kdsr(path, basicsr_param_key(opt['path'].get('param_key_g', 'auto')),
                             'path:pretrain_network_g')
    if not spec.is_teacher:
        return None
    opt['path']['pretrain_network_g'] = None
    return path, state


def init_student(model, teacher_init):
    """Start the student (and its EMA copy) from the teacher ``(path, state_dict)`` that
    :func:`take_teacher_init` read, as ``init_from_teacher`` says."""
    path, state = teacher_init
    mode = model.opt['train'].get('init_from_teacher', 'authors') if model.is_train else 'authors'
    net = model.get_bare_model(model.net_g)
    try:
        report = init_student_from_teacher(net, state, mode=mode, param_key=None)
    except ValueError as err:
        raise OptionError(f'path:pretrain_network_g: {path}: {err}') from None
    get_root_logger().info(f'Student initialised from teacher {path} ({mode}): {len(report["loaded"])} '
                           f'tensors copied, encoder tensors left fresh: {len(report["skipped"])}.')
    if hasattr(model, 'net_g_ema'):
        model.model_ema(0)  # the EMA copy starts as the student does


@torch.no_grad()
def teacher_idr(teacher, lq, gt):
    """The teacher's IDR list [D'_T] for a batch (no graph: it is a fixed target)."""
    return teacher.encode(lq, gt)[1]
