"""torchvision 0.17 removed ``torchvision.transforms.functional_tensor``; BasicSR 1.4.2 imports
``rgb_to_grayscale`` from it. When (and only when) it is absent, :func:`install_torchvision_compat`
serves it as an alias of ``torchvision.transforms._functional_tensor``. No imports beyond the
standard library until the alias is used (the start-up hook installs it in every interpreter).

For torchvision >= 0.17 with basicsr 1.4.2; harmless elsewhere (the finder answers only when
the old module is missing).
"""
import sys

_TV_REMOVED = 'torchvision.transforms.functional_tensor'
_TV_CURRENT = 'torchvision.transforms._functional_tensor'


class _AliasLoader:
    """Creates a module that re-exports the public names of ``_TV_CURRENT``."""

    @staticmethod
    def create_module(spec):
        import importlib
        import types
        current = importlib.import_module(_TV_CURRENT)
        module = types.ModuleType(spec.name, current.__doc__)
        module.__dict__.update({k: v for k, v in vars(current).items() if not k.startswith('__')})
        return module

    @staticmethod
    def exec_module(module):
        pass


class TorchvisionCompatFinder:
    """Last on ``sys.meta_path``: answers only for the removed module, only if nothing else did."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != _TV_REMOVED:
            return None
        import importlib.util
        if importlib.util.find_spec(_TV_CURRENT) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader())


def install_torchvision_compat():
    if TorchvisionCompatFinder not in sys.meta_path:
        sys.meta_path.append(TorchvisionCompatFinder)
