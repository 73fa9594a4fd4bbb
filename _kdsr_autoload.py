"""Start-up hook that lets stock BasicSR find the KDSR classes.

``pip install`` puts ``kdsr-basicsr.pth`` into site-packages; Python runs its single line
(``import _kdsr_autoload; _kdsr_autoload.install()``) at every interpreter start. This
module imports nothing heavy (no torch, no basicsr): ``install()`` only adds two finders to
``sys.meta_path``, which act on two imports and ignore every other:

* ``basicsr``: once BasicSR's package ``__init__`` has run, ``kdsr_model`` is imported, which
  registers the KDSR architectures, models and losses into BasicSR's registries. So
  ``python basicsr/train.py -opt ...``, ``python -m basicsr.train`` and ``basicsr/test.py``
  find ``BlindSR_TA``, ``KDSRNetTAModel``, ``KDLoss``... without any edit to BasicSR.
  Set ``KDSR_NO_AUTOLOAD=1`` to turn this off.
* ``torchvision.transforms.functional_tensor``: torchvision 0.17 removed it, and BasicSR
  1.4.2 imports ``rgb_to_grayscale`` from it. When (and only when) it is absent, it is
  served as an alias of ``torchvision.transforms._functional_tensor``.

The torchvision alias lives in ``_kdsr_torchvision`` (as light as this module), which
``kdsr_arch`` installs itself, so the shim also holds when the ``.pth`` file is not processed
(``python -S``, a source checkout on PYTHONPATH); nothing of ours imports this module back.
"""
import os
import sys

from _kdsr_torchvision import install_torchvision_compat


def _register_kdsr():
    if os.environ.get('KDSR_NO_AUTOLOAD', '').strip().lower() in ('1', 'true', 'yes'):
        return
    try:
        import kdsr_model  # noqa: F401  (registers everything)
    except Exception as err:  # a broken plugin must not break every BasicSR user
        print(
            f'kdsr: KDSR classes were not registered in BasicSR ({type(err).__name__}: {err}). '
            'Set KDSR_NO_AUTOLOAD=1 to silence this.',
            file=sys.stderr)


class BasicSRHook:
    """First on ``sys.meta_path``: lets the real finders locate ``basicsr`` and wraps its loader
    so that KDSR is registered right after BasicSR's ``__init__`` has run."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != 'basicsr':
            return None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _register_kdsr()

        loader.exec_module = exec_module
        return spec


def install():
    """Called by ``kdsr-basicsr.pth`` at interpreter start-up."""
    install_torchvision_compat()
    if BasicSRHook not in sys.meta_path and 'basicsr' not in sys.modules:
        sys.meta_path.insert(0, BasicSRHook)
