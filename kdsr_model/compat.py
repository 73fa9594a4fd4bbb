"""Every patch of third-party internals, each with the versions it was written for.

Our own replacements (``dist.init_dist``, ``resume.load_resume_state``) live beside the code
they belong to; swapping them into BasicSR, GFPGAN or PyYAML happens here only, behind a
version guard: outside the versions listed in :data:`PATCHED_FOR` a patch is still applied
(the attribute it replaces is checked first) and one warning names the package, the version
found and the version the patch was written for.

==================================  ===================  =====================================
patch                               written for          why
==================================  ===================  =====================================
:func:`yaml_floats_with_exponents`  basicsr 1.4.x,       ``lr: 2e-4`` (YAML 1.1) is read as a
                                    PyYAML 5-6           string; BasicSR's Adam then fails.
:func:`device_aware_init_dist`      basicsr 1.4.x        ``init_dist`` always uses nccl and
                                                         divides by the GPU count (no CPU DDP).
:func:`device_aware_resume`         basicsr 1.4.x        ``load_resume_state`` maps to
                                                         ``cuda.current_device()``, unpickles
                                                         fully, and looks in the wrong folder.
:func:`vgg_pretrain_path`           basicsr 1.4.x        the VGG19 of the perceptual loss is
                                                         read from one fixed relative path or
                                                         downloaded.
:func:`facexlib_weights_from`       gfpgan 1.3.x         facexlib's weights are downloaded into
                                                         ``gfpgan/weights`` under the cwd.
``install_torchvision_compat``      torchvision >= 0.17  BasicSR 1.4.2 imports the removed
                                    (basicsr 1.4.2)      ``functional_tensor``; lives in
                                                         ``_kdsr_torchvision`` (stdlib only: the
                                                         start-up hook installs it).
==================================  ===================  =====================================
"""
import contextlib
import re
import warnings
from importlib import metadata

from _kdsr_torchvision import install_torchvision_compat  # noqa: F401  (listed above; re-exported)

# package -> version prefixes each patch of that package was written and tested for
PATCHED_FOR = {'basicsr': ('1.4.',), 'gfpgan': ('1.3.',)}

_warned = set()


def _installed(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def version_guard(package, patch):
    """Warn once when ``package``'s installed version is not one ``patch`` was written for;
    returns whether it is."""
    found = _installed(package)
    known = PATCHED_FOR[package]
    if found is None or found.startswith(known):
        return True
    if (package, patch) not in _warned:
        _warned.add((package, patch))
        warnings.warn(
            f'kdsr: {patch} patches {package} internals written for {package} {"/".join(k + "x" for k in known)}; '
            f'found {found}. If this fails, pin {package} to a listed version or report it.',
            RuntimeWarning, stacklevel=3)
    return False


def _replace(module, name, new, package, patch):
    """Set ``module.name = new`` after the version guard; the attribute must exist."""
    version_guard(package, patch)
    if not hasattr(module, name):
        raise ImportError(f'kdsr: {patch}: {module.__name__}.{name} not found in {package} {_installed(package)}; '
                          f'install {package} {PATCHED_FOR[package][0]}x.')
    setattr(module, name, new)


# ---------------------------------------------------------------- PyYAML, through BasicSR ----
YAML_FLOAT = re.compile(
    r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$''', re.X)


def yaml_floats_with_exponents():
    """Make BasicSR's options loader (``basicsr.utils.options.ordered_yaml``) read ``2e-4`` as a
    float, as YAML 1.2 does (idempotent)."""
    from basicsr.utils.options import ordered_yaml
    version_guard('basicsr', 'yaml_floats_with_exponents')
    loader = ordered_yaml()[0]
    if getattr(loader, '_kdsr_floats', False):
        return
    loader.add_implicit_resolver('tag:yaml.org,2002:float', YAML_FLOAT, list('-+0123456789.'))
    loader._kdsr_floats = True


# ------------------------------------------------------------------------------- BasicSR ----
def device_aware_init_dist():
    """BasicSR's option parser uses :func:`kdsr_model.dist.init_dist` (gloo on CPU)."""
    import basicsr.utils.options
    from .dist import init_dist
    _replace(basicsr.utils.options, 'init_dist', init_dist, 'basicsr', 'device_aware_init_dist')


def device_aware_resume():
    """BasicSR's train pipeline uses :func:`kdsr_model.resume.load_resume_state`."""
    import basicsr.train
    from .resume import load_resume_state
    _replace(basicsr.train, 'load_resume_state', load_resume_state, 'basicsr', 'device_aware_resume')


def install_training_patches():
    """The patches ``kdsr-train`` / ``kdsr-test`` run BasicSR's pipelines under."""
    device_aware_init_dist()
    device_aware_resume()
    yaml_floats_with_exponents()


@contextlib.contextmanager
def vgg_pretrain_path(path):
    """While the block runs, BasicSR's ``VGGFeatureExtractor`` reads its weights from ``path``."""
    from basicsr.archs import vgg_arch
    saved = getattr(vgg_arch, 'VGG_PRETRAIN_PATH', None)
    _replace(vgg_arch, 'VGG_PRETRAIN_PATH', path, 'basicsr', 'vgg_pretrain_path')
    try:
        yield
    finally:
        vgg_arch.VGG_PRETRAIN_PATH = saved


# -------------------------------------------------------------------------------- GFPGAN ----
@contextlib.contextmanager
def facexlib_weights_from(folder):
    """While the block runs (GFPGANer is built), GFPGAN's FaceRestoreHelper reads facexlib's
    weights from ``folder`` instead of downloading them into ``gfpgan/weights``."""
    import gfpgan.utils
    original = getattr(gfpgan.utils, 'FaceRestoreHelper', None)

    def helper(*args, **kwargs):
        kwargs['model_rootpath'] = folder
        return original(*args, **kwargs)

    _replace(gfpgan.utils, 'FaceRestoreHelper', helper, 'gfpgan', 'facexlib_weights_from')
    try:
        yield
    finally:
        gfpgan.utils.FaceRestoreHelper = original
