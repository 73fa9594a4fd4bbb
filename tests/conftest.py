import os
import re
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # reference_kdsr.py and helpers live beside the tests

# kdsr-upscale caches its CPU precision verdict (kdsr_model.cpu_precision): in a folder of the
# test session's own, inherited by the tools the tests run, never in the user's ~/.cache
os.environ['KDSR_CACHE_DIR'] = tempfile.mkdtemp(prefix='kdsr-test-cache-')

REPO = os.path.dirname(HERE)
SAMPLES = os.path.join(HERE, '..', 'datasets', 'samples')
# The repository's own photos (datasets/samples, licences in its README): the tests read nothing outside the clone.
SAMPLE_PHOTOS = [os.path.join(SAMPLES, 'train', name) for name in ('astronaut.png', 'coffee.png', 'rocket.png')]
SAMPLE_PHOTOS.append(os.path.join(SAMPLES, 'val', 'gt', 'chelsea.png'))
PHOTO = 'coffee.png'  # the one photo that single-image tests crop


@pytest.fixture(scope='session')
def photos(tmp_path_factory):
    """A photo folder laid out as ``<root>/val/*.png``, made from the repository's sample photos."""
    root = tmp_path_factory.mktemp('photos')
    (root / 'val').mkdir()
    for path in SAMPLE_PHOTOS:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        assert img is not None, f'{path}: sample photo missing from the repository'
        cv2.imwrite(str(root / 'val' / os.path.basename(path)), img)
    return str(root)


@pytest.fixture
def paired_set(tmp_path, photos):
    """HR crops of the val photos and their bicubic x4 LR, as BasicSR's PairedImageDataset reads them."""
    gt_dir, lq_dir = tmp_path / 'data' / 'gt', tmp_path / 'data' / 'lq'
    gt_dir.mkdir(parents=True)
    lq_dir.mkdir(parents=True)
    for name in sorted(os.listdir(os.path.join(photos, 'val')))[:2]:
        img = cv2.imread(os.path.join(photos, 'val', name), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        hr = np.ascontiguousarray(img[h // 2 - 32:h // 2 + 32, w // 2 - 32:w // 2 + 32])
        cv2.imwrite(str(gt_dir / name), hr)
        cv2.imwrite(str(lq_dir / name), cv2.resize(hr, (16, 16), interpolation=cv2.INTER_CUBIC))
    return gt_dir, lq_dir


def save_student(path, n_feats=8, n_encoder_res=2, n_sr_blocks=2, seed=0):
    """A random-weight KDSR student file (BasicSR format) of the given size; returns its path as str."""
    import torch

    from kdsr_arch import BlindSR_ST
    torch.manual_seed(seed)
    net = BlindSR_ST(n_feats=n_feats, n_encoder_res=n_encoder_res, n_sr_blocks=n_sr_blocks)
    torch.save({'params': net.state_dict()}, path)
    return str(path)


BIN = os.path.dirname(sys.executable)  # the venv's console scripts (kdsr-upscale, kdsr-train, ...)


def free_port():
    """A TCP port free on this machine now (for torchrun's rendezvous): no fixed port that
    another run or service may hold."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_tool(tool, *args, check=None, cwd=None, timeout=600):
    """Run an installed ``kdsr-*`` console script; ``check``: the exit status it must give."""
    import subprocess
    proc = subprocess.run([os.path.join(BIN, tool), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f'exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}'
    return proc


def error_lines(proc):
    """stderr lines that are not progress bars or libjpeg's own warnings."""
    return [line for line in proc.stderr.splitlines()
            if line.strip() and 'it/s]' not in line and 'img/s]' not in line and not line.startswith(
                ('Premature end of JPEG', 'Corrupt JPEG', 'libpng'))]


class Run:
    """A finished in-process run of a tool's ``main`` (the console script's code)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def upscale(capsys):
    """``upscale(*args, check=None)``: kdsr-upscale's ``main`` in this process, argparse exits
    included; ``check``: the exit status it must give."""
    from kdsr_model.upscale_cli import main

    def run(*args, check=None):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as err:  # argparse
            code = err.code
        out, err = capsys.readouterr()
        if check is not None:
            assert code == check, f'exit {code}:\n{out}\n{err}'
        return Run(code, out, err)

    return run


def run_py(code=None, args=(), cwd=None, env=None, check=True):
    """Run a fresh interpreter outside the source tree, so the installed package is used."""
    import subprocess
    full_env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'KDSR_NO_AUTOLOAD')}
    full_env.update(env or {})
    cmd = [sys.executable] + (['-c', code] if code is not None else []) + list(args)
    proc = subprocess.run(cmd, cwd=cwd or os.path.expanduser('~'), env=full_env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def stock_basicsr_clone(tmp_path):
    """A directory laid out like a BasicSR clone: ``basicsr/test.py`` is BasicSR's own file, unedited."""
    import shutil

    import basicsr
    clone = tmp_path / 'BasicSR'
    (clone / 'basicsr').mkdir(parents=True)
    for script in ('train.py', 'test.py'):
        shutil.copy(os.path.join(os.path.dirname(basicsr.__file__), script), clone / 'basicsr' / script)
    return clone


# ----------------------------------------------------------------- tiny training runs


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    """The sample photos through ``kdsr-prepare``: sub-images, meta_info and LMDB."""
    out = tmp_path_factory.mktemp('prepared')
    proc = subprocess.run([os.path.join(BIN, 'kdsr-prepare'), '--hr', os.path.join(SAMPLES, 'train'), '--out',
                           str(out), '--crop-size', '200', '--step', '200', '--lmdb'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _opt_dict(name, prepared, iters=4, backend='disk', train=None, top=None, **path):
    from basicsr.utils.options import ordered_yaml
    with open(os.path.join(REPO, 'options', 'tiny', name)) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    train_set, val = opt['datasets']['train'], opt['datasets']['val']
    if backend == 'lmdb':
        train_set['dataroot_gt'] = str(prepared / 'sub.lmdb')
        train_set['io_backend'] = {'type': 'lmdb'}
        train_set.pop('meta_info')
    else:
        train_set['dataroot_gt'], train_set['meta_info'] = str(prepared / 'sub'), str(prepared / 'meta_info.txt')
    val['dataroot_gt'], val['dataroot_lq'] = os.path.join(SAMPLES, 'val', 'gt'), os.path.join(SAMPLES, 'val', 'lq')
    opt['train']['total_iter'] = iters
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = opt['logger']['print_freq'] = 2
    opt['logger']['use_tb_logger'] = False
    opt['path'].update(path)
    opt['train'].update(train or {})
    opt.update(top or {})
    return opt


def _options(name, tmp_path, prepared, **kwargs):
    from basicsr.utils.options import ordered_yaml
    opt = _opt_dict(name, prepared, **kwargs)
    out = tmp_path / name
    out.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
    return out, opt['name']


def _train(opt_file, cwd, check=True, extra=()):
    proc = subprocess.run([os.path.join(BIN, 'kdsr-train'), '-opt', str(opt_file), *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def _psnrs(log):
    return [float(v) for v in re.findall(r'# psnr: ([\d.]+)', log)]


def _in_process(name, tmp_path, prepared, **kwargs):
    """Options as BasicSR's parse_options leaves them for a single CPU process."""
    opt = _opt_dict(name, prepared, **kwargs)
    opt.update(dist=False, rank=0, world_size=1, is_train=True, auto_resume=False, num_gpu=0)
    for phase, dataset in opt['datasets'].items():
        dataset['phase'], dataset['scale'] = phase.split('_')[0], opt['scale']
    root = tmp_path / 'exp'
    opt['path'].update(experiments_root=str(root), models=str(root / 'models'), log=str(root),
                       training_states=str(root / 'states'), visualization=str(root / 'vis'))
    return opt


def _batch(opt, n):
    from basicsr.data import build_dataset
    from torch.utils.data import default_collate
    dataset = build_dataset(opt['datasets']['train'])
    return default_collate([dataset[i] for i in range(n)])
