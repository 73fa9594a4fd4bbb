"""Reading KDSR checkpoints: unwrapping, architecture detection, student-from-teacher init.

Formats read: BasicSR's ``{'params': ..., 'params_ema': ...}`` (the KDSR-GAN releases and
our training output), and a raw state_dict (the KDSR-classic releases). Keys saved from a
(Distributed)DataParallel wrapper (``module.`` prefix) are accepted too.

``.safetensors`` files (spandrel, OpenModelDB, ``kdsr-export --format safetensors``) are read
as well, told from ``.pth`` by their first bytes (an 8-byte little-endian header length, then
the JSON header), whatever their name. safetensors has no nesting: a file is a flat state_dict,
or BasicSR's two entries flattened with a prefix, every key ``params_ema.<name>`` or
``params.<name>`` (read as ``{'params_ema': {...}, 'params': {...}}``, so ``param_key`` picks
one as in a ``.pth``). ``param_key`` is ignored for flat files. Reading them needs the
safetensors package (``pip install 'kdsr[safetensors]'``); ``.pth`` files never do.

Detection follows spandrel's approach: a few declarative key checks, then every
hyper-parameter is read off tensor shapes.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from .blindsr_arch import _BlindSR
from .kd_ide_arch import EXTRA_INPUT_CHANNELS

PARAM_KEYS = ('params_ema', 'params')
TORCH_MAGIC = (b'PK\x03\x04', b'\x80')  # torch.save's zip archive; the legacy format's pickle protocol byte


class SafetensorsMissingError(ImportError, ValueError):
    """A ``.safetensors`` file met without the safetensors package (a ValueError, as for any
    unreadable checkpoint, so that every tool reports it in one line)."""


def first_line(err):
    """An exception's message, first line only (its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def safetensors_torch(source):
    """``safetensors.torch``; :class:`SafetensorsMissingError` naming ``source`` if not installed."""
    try:
        import safetensors.torch
    except ImportError:
        raise SafetensorsMissingError(f"{source}: install safetensors for .safetensors files "
                                      "(pip install 'kdsr[safetensors]').") from None
    return safetensors.torch


def weights_format(path):
    """``'safetensors'`` or ``'pytorch'``, from the first bytes of the file.

    safetensors: an 8-byte little-endian header length that fits in the file, then ``{``;
    PyTorch: a zip archive (``torch.save``) or a pickle (the legacy format). A file that is
    neither goes by its extension, so that its error names the format it was meant to be.
    """
    with open(path, 'rb') as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b'{' and int.from_bytes(head[:8], 'little') <= os.path.getsize(path) - 8:
        return 'safetensors'
    if head.startswith(TORCH_MAGIC):
        return 'pytorch'
    return 'safetensors' if path.lower().endswith('.safetensors') else 'pytorch'


def nest_param_keys(tensors):
    """``{'params_ema.G.x': t, 'params.G.x': u}`` -> ``{'params_ema': {'G.x': t}, 'params': {'G.x': u}}``
    when every key starts with one of :data:`PARAM_KEYS` and a dot; any other dict is returned as it is."""
    prefixes = tuple(k + '.' for k in PARAM_KEYS)
    if not tensors or not all(key.startswith(prefixes) for key in tensors):
        return tensors
    nested = {}
    for key, value in tensors.items():
        entry, name = key.split('.', 1)
        nested.setdefault(entry, {})[name] = value
    return nested


def read_safetensors(path):
    """The tensors of a safetensors file as a dict, on the CPU (read whole: no file stays mapped)."""
    st = safetensors_torch(path)
    with open(path, 'rb') as f:
        data = f.read()
    try:
        return st.load(data)
    except Exception as err:  # SafetensorError: bad header, truncated data, unknown dtype...
        raise ValueError(f'{path}: not a loadable safetensors file ({first_line(err)}).') from None


def load_state_dict_file(path: str, param_key: str | None = 'auto') -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely and return a flat state_dict.

    ``.pth`` (and any PyTorch file) is read with ``torch.load(..., weights_only=True)``;
    a safetensors file (told by its content, see :func:`weights_format`) with safetensors.

    Args:
        path (str): The checkpoint file.
        param_key (str | tuple | None): ``'auto'`` (``params_ema`` if present, else ``params``,
            else the raw dict), a key to use, e.g. ``'params'``, keys to try in order, or None
            (the raw dict). Ignored for a flat safetensors file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: checkpoint file not found.')
    if weights_format(path) == 'safetensors':
        tensors = read_safetensors(path)
        ckpt = nest_param_keys(tensors)
        if ckpt is tensors:  # flat: there is no entry to choose
            param_key = None
    else:
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err:  # pickle, zip and weights_only errors all mean the same to a user
            raise ValueError(f'{path}: not a loadable PyTorch weights file ({first_line(err)}).') from None
    return unwrap_state_dict(ckpt, param_key=param_key, source=path)


def unwrap_state_dict(ckpt: dict, param_key: str | None = 'auto',
                      source: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """Return the tensors of ``ckpt`` (BasicSR wrapper or raw state_dict), ``module.`` stripped.

    ``param_key``: as for :func:`load_state_dict_file`; with a tuple, the first key present is
    used (BasicSR's ``load_network`` falls back from ``params_ema`` to ``params`` so).
    """
    if not isinstance(ckpt, dict):
        raise ValueError(f'{source}: expected a state_dict (a dict of tensors), got {type(ckpt).__name__}.')
    if param_key == 'auto':
        param_key = next((k for k in PARAM_KEYS if isinstance(ckpt.get(k), dict)), None)
    elif isinstance(param_key, (tuple, list)):
        param_key = next((k for k in param_key if isinstance(ckpt.get(k), dict)), param_key[0])
    if param_key is not None:
        if not isinstance(ckpt.get(param_key), dict):
            found = ', '.join(map(str, list(ckpt)[:5]))
            raise KeyError(f'{source}: has no {param_key!r} entry (top-level keys: {found}).')
        ckpt = ckpt[param_key]
    state = {}
    for key, value in ckpt.items():
        if not torch.is_tensor(value):
            raise ValueError(f'{source}: entry {key!r} is not a tensor; is this a training state, not weights?')
        state[key[len('module.'):] if key.startswith('module.') else key] = value
    return state


@dataclass(frozen=True)
class KDSRSpec:
    """Architecture of a KDSR checkpoint, read off its tensor shapes."""
    arch: str  # 'BlindSR_ST' (student) or 'BlindSR_TA' (teacher)
    n_feats: int
    n_encoder_res: int
    scale: int
    n_sr_blocks: int
    extra_input: bool = False  # the student's highpass_input / the teacher's residual_input

    @property
    def is_teacher(self) -> bool:
        return self.arch == 'BlindSR_TA'

    @property
    def extra_input_key(self) -> str:
        """The constructor keyword of :attr:`extra_input` for this arch."""
        return 'residual_input' if self.is_teacher else 'highpass_input'

    def options(self) -> dict:
        """``network_g`` options: ``{'type': arch, n_feats, n_encoder_res, scale, n_sr_blocks}``,
        plus ``highpass_input`` / ``residual_input: True`` when the encoder has the extra input."""
        opt = asdict(self)
        extra = opt.pop('extra_input')
        if extra:
            opt[self.extra_input_key] = True
        return dict(type=opt.pop('arch'), **opt)

    def encoder_input_layout(self) -> list[tuple[str, int]]:
        """The groups of the encoder's input channels in order, e.g. ``[('lr', 3), ('hr', 48)]``."""
        layout = [('lr', 3)]
        if self.is_teacher:
            layout.append(('hr', 3 * self.scale * self.scale))
        if self.extra_input:
            layout.append(('residual' if self.is_teacher else 'highpass', EXTRA_INPUT_CHANNELS))
        return layout

    @property
    def encoder_in_channels(self) -> int:
        """Input channels of the encoder's first conv."""
        return sum(n for _, n in self.encoder_input_layout())

    def build(self) -> _BlindSR:
        opt = self.options()
        return ARCH_REGISTRY.get(opt.pop('type'))(**opt)


_G_REQUIRED = ('G.sub_mean.weight', 'G.head.0.weight', 'G.body.0.body.0.da_conv1.kernel.0.weight', 'G.body.1.weight',
               'G.tail.0.0.weight', 'G.tail.1.weight')
_ENCODER_PREFIX = {'BlindSR_ST': 'E_st.', 'BlindSR_TA': 'E.'}


def _count(state, pattern, start=0):
    """Number of consecutive indices i = start, start+1, ... with ``pattern.format(i)`` in ``state``."""
    n = 0
    while pattern.format(start + n) in state:
        n += 1
    return n


def detect_kdsr(state: dict[str, torch.Tensor], source: str = 'checkpoint') -> KDSRSpec:
    """Detect a KDSR student or teacher and its hyper-parameters from a state_dict.

    Raises ValueError naming ``source`` when the weights are not a KDSR net.
    """
    missing = [k for k in _G_REQUIRED if k not in state]
    arch = next((a for a, p in _ENCODER_PREFIX.items() if p + 'E.0.weight' in state), None)
    if missing or arch is None:
        what = ', '.join(missing) if missing else 'E_st.E.0.weight / E.E.0.weight'
        raise ValueError(f'{source}: not a KDSR (BlindSR_ST/BlindSR_TA) state_dict; missing {what}.')
    enc = _ENCODER_PREFIX[arch]
    n_feats = state['G.head.0.weight'].shape[0]
    n_sr_blocks = _count(state, 'G.body.0.body.{}.conv1.weight')
    n_encoder_res = _count(state, enc + 'E.{}.body.0.weight', start=2)  # E.0 conv, E.1 act, then ResBlocks
    stages = sum(1 for k in state if re.fullmatch(r'G\.tail\.0\.\d+\.weight', k))  # conv + shuffle stages
    first_out = state['G.tail.0.0.weight'].shape[0]
    if first_out == 9 * n_feats and stages == 1:
        scale = 3
    elif first_out == 4 * n_feats:
        scale = 2**stages
    else:
        raise ValueError(
            f'{source}: upsampler G.tail.0 has an unexpected shape {tuple(state["G.tail.0.0.weight"].shape)}.')
    in_ch = state[enc + 'E.0.weight'].shape[1]
    plain = KDSRSpec(arch, n_feats, n_encoder_res, scale, n_sr_blocks)
    extra = KDSRSpec(arch, n_feats, n_encoder_res, scale, n_sr_blocks, extra_input=True)
    spec = next((s for s in (plain, extra) if s.encoder_in_channels == in_ch), None)
    if spec is None:
        raise ValueError(f'{source}: encoder input has {in_ch} channels, expected {plain.encoder_in_channels} '
                         f'(or {extra.encoder_in_channels} with {extra.extra_input_key}) for a {arch} at x{scale}.')
    return spec


def load_into(net, state, source='checkpoint', strict=True):
    """``net.load_state_dict(state, strict)``; a mismatch is a ValueError naming ``source`` and
    the first missing, unexpected or mis-shaped key."""
    try:
        net.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()  # 'Error(s) in loading state_dict for X:', then the keys
        raise ValueError(f'{source}: does not load into {type(net).__name__}: {(lines[1:] or lines)[0].strip()}') \
            from None


def load_kdsr(path_or_state: str | dict, param_key: str | None = 'auto') -> tuple[_BlindSR, KDSRSpec]:
    """Build the KDSR net a checkpoint (``.pth`` or ``.safetensors`` file, or state_dict)
    describes and load it strictly. Returns ``(net, spec)``."""
    source = path_or_state if isinstance(path_or_state, str) else 'state_dict'
    state = load_state_dict_file(path_or_state, param_key) if isinstance(path_or_state, str) else \
        unwrap_state_dict(path_or_state, param_key, source)
    spec = detect_kdsr(state, source)
    net = spec.build()
    load_into(net, state, source)
    return net, spec


def _module_groups(keys):
    """Group parameter names by their owning module ('E.E.0.weight' -> 'E.E.0')."""
    groups = {}
    for key in keys:
        groups.setdefault(key.rsplit('.', 1)[0], []).append(key)
    return groups


def init_student_from_teacher(student, teacher, mode='authors', param_key='auto'):
    """Initialise a ``BlindSR_ST`` from a teacher (a ``BlindSR_TA``, its state_dict or a file).

    Args:
        student (nn.Module): The student to initialise in place.
        teacher: A ``BlindSR_TA`` module, a state_dict, or a checkpoint path.
        mode (str): ``'authors'`` (default): copy the generator ``G`` only; the student encoder
            keeps its fresh initialisation, as the authors' code does. ``'paper'``: also copy
            every encoder layer whose parameters all match in shape (all but the first conv,
            which sees 3 instead of 3 + 3*s*s channels).
        param_key (str): Which entry of a BasicSR checkpoint to read (see
            :func:`load_state_dict_file`).

    Returns:
        dict: ``{'loaded': [student keys copied], 'skipped': [encoder keys left as they were]}``.
    """
    if mode not in ('authors', 'paper'):
        raise ValueError(f"mode must be 'authors' or 'paper', got {mode!r}.")
    if isinstance(teacher, str):
        t_state = load_state_dict_file(teacher, param_key)
        source = teacher
    elif isinstance(teacher, dict):
        t_state, source = unwrap_state_dict(teacher, param_key, 'teacher state_dict'), 'teacher state_dict'
    else:
        t_state, source = teacher.state_dict(), 'teacher'
    s_state = student.state_dict()
    if 'E_st.E.0.weight' not in s_state:
        raise ValueError('init_student_from_teacher: the student must be a BlindSR_ST (no E_st encoder found).')

    new = {}
    for key, value in s_state.items():
        if not key.startswith('G.'):
            continue
        if key not in t_state:
            raise ValueError(f'{source}: teacher has no {key}; is it a KDSR teacher of the same size?')
        if t_state[key].shape != value.shape:
            raise ValueError(f'{source}: teacher {key} is {tuple(t_state[key].shape)} but the student needs '
                             f'{tuple(value.shape)}: teacher and student differ in width, depth or scale.')
        new[key] = t_state[key]
    extra = sorted(k for k in t_state if k.startswith('G.') and k not in s_state)
    if extra:
        raise ValueError(f'{source}: teacher has {extra[0]} which the student lacks: teacher and student differ in '
                         'width, depth or scale.')

    skipped = []
    enc_keys = [k for k in s_state if k.startswith('E_st.')]
    if mode == 'paper':
        for module_name, keys in _module_groups(enc_keys).items():
            t_keys = ['E.' + k[len('E_st.'):] for k in keys]
            if all(t in t_state and t_state[t].shape == s_state[k].shape for k, t in zip(keys, t_keys)):
                new.update({k: t_state[t] for k, t in zip(keys, t_keys)})
            else:
                skipped += keys
    else:
        skipped = enc_keys

    with torch.no_grad():
        for key, value in new.items():
            s_state[key].copy_(value)
    return {'loaded': sorted(new), 'skipped': sorted(skipped)}


def transplant(state: dict[str, torch.Tensor], target: KDSRSpec, source: str = 'checkpoint',
               generator: dict[str, torch.Tensor] | None = None, generator_source: str = 'generator') -> dict:
    """A student's or teacher's weights rearranged for ``target`` (the other role, or the same
    role with or without the extra encoder input), so that a new variant starts where a trained
    net stands: ``G`` and every encoder layer are copied; the first conv keeps the weights of the
    input channels both layouts have (the LR always, the HR between teachers) and gets zeros for
    the others, so the new inputs start with no effect (the net's output is unchanged when the
    LR and HR channels are all it had). Sizes (width, depths, scale) must agree.

    ``generator``: another KDSR net's state dict whose ``G`` replaces ``state``'s (e.g. a
    teacher's generator driven by a student's encoder); its sizes must agree too.
    """
    spec = detect_kdsr(state, source)
    same = ('n_feats', 'n_encoder_res', 'scale', 'n_sr_blocks')
    donors = [(spec, source)]
    if generator is not None:
        donors.append((detect_kdsr(generator, generator_source), generator_source))
    for donor, name in donors:
        if any(getattr(donor, k) != getattr(target, k) for k in same):
            raise ValueError(f'{name}: a {donor.options()} net cannot be transplanted into {target.options()}: '
                             f'{", ".join(same)} must agree.')
    src, dst = _ENCODER_PREFIX[spec.arch], _ENCODER_PREFIX[target.arch]
    out = {}
    for key, value in state.items():
        if key.startswith(src):
            key = dst + key[len(src):]
        elif generator is not None and key.startswith('G.'):
            value = generator[key]
        out[key] = value
    first = dst + 'E.0.weight'
    weight = state[src + 'E.0.weight']
    offsets, start = {}, 0
    for name, n in spec.encoder_input_layout():
        offsets[name], start = start, start + n
    new = weight.new_zeros((weight.shape[0], target.encoder_in_channels, *weight.shape[2:]))
    start = 0
    for name, n in target.encoder_input_layout():
        if name in offsets:
            new[:, start:start + n] = weight[:, offsets[name]:offsets[name] + n]
        start += n
    out[first] = new
    return out
