"""Teacher handling shared by the student models: build, load, freeze, and start the student."""
import os

import torch
from basicsr.archs import build_network
from basicsr.utils import get_root_logger

from kdsr_arch.checkpoint import detect_kdsr, init_student_from_teacher, load_state_dict_file


def _teacher_key(opt):
    """Which entry of the teacher file to read: ``param_key_TA``, else params_ema/params (auto).

    The authors read it with ``param_key_g``, which BasicSR rewrites to 'params' on resume, so
    a resumed run would silently switch teacher weights; 'auto' keeps them stable.
    """
    return opt['path'].get('param_key_TA', 'auto')


def build_frozen_teacher(opt, device, student_scale):
    """Build ``network_TA``, load ``path:pretrain_network_TA`` strictly, freeze it (eval, no grad)."""
    if opt.get('network_TA') is None:
        raise ValueError('network_TA: the student needs its teacher; add a network_TA section (type: BlindSR_TA).')
    path = opt['path'].get('pretrain_network_TA')
    if not path:
        raise ValueError('path:pretrain_network_TA: the student needs the trained teacher checkpoint; set it.')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'path:pretrain_network_TA: teacher checkpoint {path} not found; train the teacher '
                                'first (options/train_kdsrnet_x4TA.yml) or fix the path.')
    teacher = build_network(opt['network_TA'])
    if teacher.scale != student_scale:
        raise ValueError(f'network_TA: teacher scale x{teacher.scale} differs from the student scale '
                         f'x{student_scale}; use one scale for both.')
    state = load_state_dict_file(path, _teacher_key(opt))
    spec = detect_kdsr(state, path)
    if not spec.is_teacher:
        raise ValueError(f'path:pretrain_network_TA: {path} holds a student (BlindSR_ST), not a teacher.')
    try:
        teacher.load_state_dict(state, strict=True)
    except RuntimeError:
        raise ValueError(f'path:pretrain_network_TA: {path} is a teacher with {spec.options()}, which does not match '
                         f'network_TA {opt["network_TA"]}.') from None
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad = False
    get_root_logger().info(f'Teacher loaded from {path} (frozen).')
    return teacher


def take_teacher_init_path(opt):
    """If ``path:pretrain_network_g`` names a teacher file, remove it from the options (so that
    BasicSR does not load it with strict=False) and return it; else return None."""
    path = opt['path'].get('pretrain_network_g')
    if not path or not os.path.isfile(path):
        return None
    spec = detect_kdsr(load_state_dict_file(path, opt['path'].get('param_key_g', 'auto')), path)
    if not spec.is_teacher:
        return None
    opt['path']['pretrain_network_g'] = None
    return path


def init_student(model, teacher_path):
    """Start the student (and its EMA copy) from a teacher file, as ``init_from_teacher`` says."""
    mode = model.opt['train'].get('init_from_teacher', 'authors') if model.is_train else 'authors'
    net = model.get_bare_model(model.net_g)
    report = init_student_from_teacher(net, teacher_path, mode=mode, param_key=model.opt['path'].get(
        'param_key_g', 'auto'))
    get_root_logger().info(f'Student initialised from teacher {teacher_path} ({mode}): {len(report["loaded"])} '
                           f'tensors copied, encoder tensors left fresh: {len(report["skipped"])}.')
    if hasattr(model, 'net_g_ema'):
        model.model_ema(0)  # the EMA copy starts as the student does


@torch.no_grad()
def teacher_idr(teacher, lq, gt):
    """The teacher's IDR list [D'_T] for a batch (no graph: it is a fixed target)."""
    return teacher.encode(lq, gt)[1]
