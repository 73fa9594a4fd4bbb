"""The package as users meet it: installed, in fresh interpreters, through BasicSR's own scripts."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import BIN, REPO, run_py, stock_basicsr_clone
from kdsr_arch import BlindSR_ST

SMALL = dict(n_feats=8, n_encoder_res=2, n_sr_blocks=3)

OURS = ('_kdsr_autoload', '_kdsr_torchvision')  # the modules whose import finders we install


REGISTRIES = ("from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY\n"
              "print('arch', 'BlindSR_ST' in ARCH_REGISTRY and 'BlindSR_TA' in ARCH_REGISTRY)\n"
              "print('loss', 'KDLoss' in LOSS_REGISTRY)\n")


def test_start_up_hook_is_installed_and_imports_no_torch():
    out = run_py("import sys; print('hook' if '_kdsr_autoload' in sys.modules else 'no hook');"
                 "print('torch' if 'torch' in sys.modules else 'no torch');"
                 "print('basicsr' if 'basicsr' in sys.modules else 'no basicsr')").stdout.split()
    assert out == ['hook', 'no', 'torch', 'no', 'basicsr']


@pytest.mark.parametrize('first', ['basicsr', 'kdsr_arch', 'kdsr_model', 'basicsr.train', 'basicsr.data.degradations'])
def test_any_import_order_registers_everything(first):
    out = run_py(f'import {first}\n' + REGISTRIES).stdout
    assert 'arch True' in out and 'loss True' in out, out


def test_autoload_can_be_turned_off():
    out = run_py('import basicsr\n' + REGISTRIES, env={'KDSR_NO_AUTOLOAD': '1'}).stdout
    assert 'arch False' in out and 'loss False' in out
    # importing our package explicitly still registers what it owns
    out = run_py('import kdsr_arch\n' + REGISTRIES, env={'KDSR_NO_AUTOLOAD': '1'}).stdout
    assert 'arch True' in out and 'loss False' in out


@pytest.mark.parametrize('first', ['kdsr_arch', 'kdsr_model'])
def test_torchvision_shim_holds_without_the_start_up_hook(first):
    # as in a source checkout on PYTHONPATH or with site processing off: our finders removed
    code = ("import sys\n"
            f"sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, '__module__', '') not in {OURS!r}]\n"
            f"import {first}\n"
            "from torchvision.transforms.functional_tensor import rgb_to_grayscale\n"
            "import basicsr.data.degradations\n"
            "import torchvision\n"
            "print('ok', torchvision.__version__)\n" + REGISTRIES)
    out = run_py(code).stdout
    assert 'ok' in out and 'arch True' in out


def test_without_any_shim_basicsr_142_breaks_on_this_torchvision():
    """Guards the test above: it only means something where the shim is needed."""
    import torchvision
    major, minor = (int(x) for x in torchvision.__version__.split('.')[:2])
    code = ("import sys\n"
            f"sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, '__module__', '') not in {OURS!r}]\n"
            "import basicsr\n")
    proc = run_py(code, check=False)
    if (major, minor) >= (0, 17):
        assert proc.returncode != 0 and 'functional_tensor' in proc.stderr
    else:
        assert proc.returncode == 0


def _checkpoint(tmp_path):
    net = BlindSR_ST(scale=4, **SMALL)
    path = tmp_path / 'kdsr_student.pth'
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, path)
    return path


def _test_options(tmp_path, paired_set, name):
    gt_dir, lq_dir = paired_set
    opt = {
        'name': name, 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'photos', 'type': 'PairedImageDataset', 'dataroot_gt': str(gt_dir),
                                'dataroot_lq': str(lq_dir), 'io_backend': {'type': 'disk'}}},
        'network_g': dict(type='BlindSR_ST', scale=4, **SMALL),
        'path': {'pretrain_network_g': str(_checkpoint(tmp_path)), 'param_key_g': 'params_ema',
                 'strict_load_g': True},
        'val': {'save_img': True, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}},
    }
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_stock_basicsr_test_script_runs_a_kdsr_model(tmp_path, paired_set):
    """``python basicsr/test.py -opt X.yml`` (BasicSR's file) builds BlindSR_ST from its registry."""
    clone = stock_basicsr_clone(tmp_path)
    opt = _test_options(tmp_path, paired_set, 'stock_test')
    proc = run_py(args=['basicsr/test.py', '-opt', str(opt)], cwd=clone)
    log = proc.stdout + proc.stderr
    assert 'Network [BlindSR_ST] is created.' in log
    psnr = float(re.search(r'# psnr: ([\d.]+)', log).group(1))
    assert 5 < psnr < 60
    visual = clone / 'results' / 'stock_test' / 'visualization' / 'photos'
    assert sorted(p.name for p in visual.iterdir()) == sorted(
        f'{os.path.splitext(n)[0]}_stock_test.png' for n in os.listdir(paired_set[0]))


def test_stock_basicsr_fails_without_the_plugin(tmp_path, paired_set):
    """The test above passes because of the plugin, not by accident."""
    clone = stock_basicsr_clone(tmp_path)
    opt = _test_options(tmp_path, paired_set, 'stock_test_off')
    proc = run_py(args=['basicsr/test.py', '-opt', str(opt)], cwd=clone, env={'KDSR_NO_AUTOLOAD': '1'}, check=False)
    assert proc.returncode != 0 and "No object named 'BlindSR_ST'" in proc.stderr


def test_python_dash_m_basicsr_train_sees_kdsr_classes():
    code = ("import runpy, sys\n"
            "sys.argv = ['basicsr.train', '-h']\n"
            "try:\n    runpy.run_module('basicsr.train', run_name='__main__')\nexcept SystemExit:\n    pass\n" +
            REGISTRIES)
    out = run_py(code).stdout
    assert '--auto_resume' in out and 'arch True' in out and 'loss True' in out


def test_kdsr_test_writes_results_under_the_working_directory(tmp_path, paired_set):
    opt = _test_options(tmp_path, paired_set, 'cli_test')
    work = tmp_path / 'work'
    work.mkdir()
    subprocess.run([os.path.join(BIN, 'kdsr-test'), '-opt', str(opt)], cwd=work, check=True, capture_output=True)
    assert len(list((work / 'results' / 'cli_test' / 'visualization' / 'photos').iterdir())) == 2
    import kdsr_model
    assert not os.path.exists(os.path.join(os.path.dirname(kdsr_model.__file__), 'results'))


@pytest.mark.parametrize('entry', [[os.path.join(BIN, 'kdsr-train')], [sys.executable, '-m', 'kdsr_model.train'],
                                   [os.path.join(BIN, 'kdsr-test')]])
def test_entry_points_take_every_basicsr_flag(entry):
    out = subprocess.run(entry + ['-h'], capture_output=True, text=True, check=True).stdout
    for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--local_rank', '--force_yml'):
        assert flag in out, flag




@pytest.mark.parametrize('hook', ['build_wheel', 'build_editable'])
def test_wheels_carry_the_start_up_file_at_the_site_packages_root(tmp_path, hook):
    """``pip install .`` and ``pip install -e .`` both install kdsr-basicsr.pth."""
    import zipfile
    src = tmp_path / 'src'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns('.venv', '.git', 'build', '*.egg-info', 'experiments',
                                                             'results', 'tb_logger', '__pycache__'))
    out = tmp_path / 'wheels'
    out.mkdir()
    name = run_py(f'from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))', cwd=src).stdout
    with zipfile.ZipFile(out / name.strip().splitlines()[-1]) as whl:
        names = whl.namelist()
        assert 'kdsr-basicsr.pth' in names
        assert whl.read('kdsr-basicsr.pth').decode().strip() == 'import _kdsr_autoload; _kdsr_autoload.install()'
        if hook == 'build_wheel':
            assert '_kdsr_autoload.py' in names and '_kdsr_torchvision.py' in names and 'kdsr_arch/blindsr_arch.py' in names


@pytest.mark.parametrize('order', ['import realesrgan\nimport kdsr_model', 'import kdsr_model\nimport realesrgan'])
def test_imports_together_with_realesrgan(order):
    """Nothing we register clashes with BasicSR's or Real-ESRGAN's names (UNetDiscriminatorSN...)."""
    out = run_py(order + '\n' + REGISTRIES + "from basicsr.utils.registry import MODEL_REGISTRY\n"
                 "print('models', 'RealESRGANModel' in MODEL_REGISTRY, 'KDSRGANSTModel' in MODEL_REGISTRY)\n"
                 "print('disc', ARCH_REGISTRY.get('UNetDiscriminatorSN').__module__)\n").stdout
    assert 'arch True' in out and 'loss True' in out and 'models True True' in out
    # BasicSR keeps its own as UNetDiscriminatorSN_basicsr; Real-ESRGAN's identical copy takes the plain name
    assert re.search(r'disc (basicsr|realesrgan)\.archs\.discriminator_arch', out)


SHIPPED_TEST_OPTIONS = sorted(f for f in os.listdir(os.path.join(REPO, 'options')) if f.startswith('test_'))


def _shipped_test_options(tmp_path, paired_set, name):
    """A shipped test options file, unchanged but for its data and weight paths: every dataset reads
    ``paired_set``, ``pretrain_network_g`` is a random-weight file of the file's own network."""
    from basicsr.utils.registry import ARCH_REGISTRY
    with open(os.path.join(REPO, 'options', name)) as f:
        opt = yaml.safe_load(f)
    gt_dir, lq_dir = paired_set
    for dataset in opt['datasets'].values():
        dataset.update(dataroot_gt=str(gt_dir), dataroot_lq=str(lq_dir))
    net_opt = dict(opt['network_g'])
    state = ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt).state_dict()
    key = opt['path'].get('param_key_g')
    weights = tmp_path / 'weights.pth'
    torch.save({key: state} if key else state, weights)
    opt['path']['pretrain_network_g'] = str(weights)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(opt))
    return path, opt


@pytest.mark.slow
@pytest.mark.parametrize('runner', ['basicsr/test.py', 'kdsr-test'])
@pytest.mark.parametrize('name', SHIPPED_TEST_OPTIONS)
def test_every_shipped_test_options_file_runs_through_the_test_pipeline(tmp_path, paired_set, name, runner):
    """Validation runs on every dataset, metrics are logged and, where the file asks, images are saved."""
    assert SHIPPED_TEST_OPTIONS, 'no options/test_*.yml found'
    path, opt = _shipped_test_options(tmp_path, paired_set, name)
    if runner == 'kdsr-test':
        work = tmp_path / 'work'
        work.mkdir()
        proc = subprocess.run([os.path.join(BIN, 'kdsr-test'), '-opt', str(path)], cwd=work, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        work = stock_basicsr_clone(tmp_path)
        proc = run_py(args=['basicsr/test.py', '-opt', str(path)], cwd=work)
    log = proc.stdout + proc.stderr
    assert f"Network [{opt['network_g']['type']}] is created." in log
    images = sorted(os.path.splitext(n)[0] for n in os.listdir(paired_set[0]))
    for dataset in opt['datasets'].values():
        block = log.split(f"Validation {dataset['name']}\n", 1)
        assert len(block) == 2, f"no validation of {dataset['name']} in the log"
        for metric in opt['val']['metrics']:
            value = float(re.search(rf'# {metric}: ([\d.]+)', block[1]).group(1))
            assert 0 < value < 100, (metric, value)
        visual = work / 'results' / opt['name'] / 'visualization' / dataset['name']
        if opt['val'].get('save_img'):
            assert sorted(p.name for p in visual.iterdir()) == [f"{n}_{opt['name']}.png" for n in images]
        else:
            assert not visual.exists()


def test_training_patches_replace_basicsr_internals_with_ours():
    import basicsr.train
    import basicsr.utils.options
    from kdsr_model import compat, dist, resume
    compat.install_training_patches()
    assert basicsr.utils.options.init_dist is dist.init_dist
    assert basicsr.train.load_resume_state is resume.load_resume_state
    loader = basicsr.utils.options.ordered_yaml()[0]
    assert yaml.load('lr: 2e-4', Loader=loader) == {'lr': 2e-4}


def test_a_patch_outside_its_versions_warns_once_naming_package_and_versions(monkeypatch):
    from basicsr.archs import vgg_arch
    from kdsr_model import compat
    monkeypatch.setattr(compat, '_installed', lambda package: '9.0.0')
    monkeypatch.setattr(compat, '_warned', set())
    before = vgg_arch.VGG_PRETRAIN_PATH
    with pytest.warns(RuntimeWarning, match=r'vgg_pretrain_path patches basicsr internals written for basicsr '
                      r'1\.4\.x; found 9\.0\.0'):
        with compat.vgg_pretrain_path('elsewhere.pth'):
            assert vgg_arch.VGG_PRETRAIN_PATH == 'elsewhere.pth'
    assert vgg_arch.VGG_PRETRAIN_PATH == before
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the second use is silent
        with compat.vgg_pretrain_path('elsewhere.pth'):
            pass


def test_a_patch_whose_target_is_gone_is_a_one_line_import_error(monkeypatch):
    import gfpgan.utils
    from kdsr_model import compat
    monkeypatch.delattr(gfpgan.utils, 'FaceRestoreHelper')
    with pytest.raises(ImportError, match=r'^kdsr: facexlib_weights_from: gfpgan\.utils\.FaceRestoreHelper not found '
                       r'in gfpgan [\d.]+; install gfpgan 1\.3\.x\.$'):
        with compat.facexlib_weights_from('folder'):
            pass
