"""Options checked before BasicSR creates anything: one line naming the key and what to do.

BasicSR reads an options file as it goes: a missing key, a string where a number belongs or a
dataset folder that does not exist shows up as a traceback minutes in, after the experiment
folders were made (and an existing one archived). :func:`check_options` reads the file as
BasicSR will and checks what a run needs first.
"""
import inspect
import os

import yaml

from .errors import MissingFileError, OptionError


def load_options(path):
    """The options file as BasicSR's ``parse_options`` reads it (its ordered YAML loader)."""
    from basicsr.utils.options import ordered_yaml
    if not os.path.isfile(path):
        raise MissingFileError(f'-opt {path}: no such file.')
    try:
        with open(path) as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        raise OptionError(f'-opt {path}: not valid YAML{where} ({getattr(err, "problem", None) or err}).') from None
    if not isinstance(opt, dict):
        raise OptionError(f'-opt {path}: expected a mapping of options (name, model_type, network_g, ...).')
    return opt


def _number(opt, key, where, kind=int, low=None, required=True):
    value = opt.get(key) if isinstance(opt, dict) else None
    if value is None:
        if required:
            raise OptionError(f'{where}{key}: missing; add it (a {kind.__name__}).')
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise OptionError(f'{where}{key}: {value!r} is not a{"n integer" if kind is int else " number"}.')
    if low is not None and value < low:
        raise OptionError(f'{where}{key}: {value} must be {low} or more.')


def _registered(section, where, registry, what):
    if not isinstance(section, dict) or 'type' not in section:
        raise OptionError(f'{where}: missing or without a type; add {where}:type (a registered {what}).')
    name = section['type']
    # BasicSR renames its own classes '<name>_basicsr' when Real-ESRGAN registers the same name
    found = [n for n in (name, f'{name}_basicsr') if n in registry]
    if not found:
        raise OptionError(f"{where}:type: '{name}' is not a registered {what}; check the spelling "
                          '(and that its package is installed).')
    return registry._obj_map[found[0]]


def _check_network(section, where, registry):
    cls = _registered(section, where, registry, 'network')
    params = inspect.signature(cls).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in section if k != 'type' and k not in params]
        if unknown:
            raise OptionError(f'{where}:{unknown[0]}: not an argument of {section["type"]} '
                              f'(it takes {", ".join(k for k in params if k not in ("self", "args", "kwargs"))}).')
    for key, value in section.items():
        param = params.get(key)
        if param is None or param.default is inspect.Parameter.empty or value is None:
            continue
        default = param.default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise OptionError(f'{where}:{key}: {value!r} is not true or false.')
        if isinstance(default, int) and not isinstance(default, bool):
            _number(section, key, f'{where}:', int)
        elif isinstance(default, float):
            _number(section, key, f'{where}:', float)


def _check_dataset(name, ds, is_train):
    from basicsr.utils.registry import DATASET_REGISTRY
    where = f'datasets:{name}'
    _registered(ds, where, DATASET_REGISTRY, 'dataset')
    backend = (ds.get('io_backend') or {}).get('type', 'disk')
    for key in ('dataroot_gt', 'dataroot_lq', 'meta_info', 'meta_info_file'):
        path = ds.get(key)
        if path is None:
            continue
        if not isinstance(path, str) or not os.path.exists(path):
            raise OptionError(f'{where}:{key}: {path} not found; prepare the data (kdsr-prepare, kdsr-testset, '
                              'kdsr-degrade) or fix the path.')
        if key.startswith('dataroot') and backend == 'disk' and os.path.isdir(path) and not os.listdir(path):
            raise OptionError(f'{where}:{key}: {path} is empty.')
    if ds.get('dataroot_gt') is None and ds.get('dataroot_lq') is None:
        raise OptionError(f'{where}: no dataroot_gt (or dataroot_lq); name the data folder.')
    if name.split('_')[0] == 'train' and is_train:
        _number(ds, 'batch_size_per_gpu', f'{where}:', int, low=1)
        _number(ds, 'num_worker_per_gpu', f'{where}:', int, low=0, required=False)
        _number(ds, 'dataset_enlarge_ratio', f'{where}:', int, low=1, required=False)


def _section(parent, key, prefix, what):
    """``parent[key]``, which must be a mapping; else an OptionError asking for ``what``."""
    value = parent.get(key)
    if not isinstance(value, dict):
        raise OptionError(f'{prefix}{key}: missing; add {what}.')
    return value


def check_options(opt, is_train=True):
    """Check what a BasicSR run needs before it starts; raise :class:`OptionError` naming the key."""
    import basicsr.data  # noqa: F401  (fills the registries, as BasicSR's pipelines do)
    import basicsr.models  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
    for key in ('name', 'model_type', 'network_g', 'datasets'):
        if key not in opt:
            raise OptionError(f'{key}: missing; every BasicSR options file has name, model_type, network_g and '
                              'datasets.')
    if not isinstance(opt['name'], str) or not opt['name'] or os.sep in opt['name']:
        raise OptionError(f'name: {opt["name"]!r} must be a plain folder name for experiments/<name>.')
    if opt['model_type'] not in MODEL_REGISTRY and f"{opt['model_type']}_basicsr" not in MODEL_REGISTRY:
        raise OptionError(f"model_type: '{opt['model_type']}' is not a registered model; check the spelling.")
    _number(opt, 'scale', '', int, low=1, required=False)
    _check_network(opt['network_g'], 'network_g', ARCH_REGISTRY)
    for key in ('network_TA', 'network_d'):
        if opt.get(key) is not None:
            _check_network(opt[key], key, ARCH_REGISTRY)
    if not isinstance(opt['datasets'], dict) or not opt['datasets']:
        raise OptionError('datasets: empty; add a train (and val) dataset.')
    phases = [name.split('_')[0] for name in opt['datasets']]
    if is_train and 'train' not in phases:
        raise OptionError('datasets:train: missing; a training run needs a train dataset.')
    for name, ds in opt['datasets'].items():
        _check_dataset(name, ds, is_train)
    if is_train:
        train = _section(opt, 'train', '', 'the train section (optim_g, scheduler, total_iter, losses)')
        _number(train, 'total_iter', 'train:', int, low=1)
        optim = _section(train, 'optim_g', 'train:', 'the optimiser (type: Adam, lr: 2.0e-4)')
        _number(optim, 'lr', 'train:optim_g:', float, low=0)
        _number(train, 'ema_decay', 'train:', float, low=0, required=False)
    _number(opt.get('val') or {}, 'val_freq', 'val:', int, low=1, required=False)
    for key in ('print_freq', 'save_checkpoint_freq'):
        _number(opt.get('logger') or {}, key, 'logger:', int, low=1, required=False)
