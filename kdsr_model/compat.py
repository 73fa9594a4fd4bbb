"""Patches of third-party behaviour, each with the versions it is for, installed on import.

- PyYAML (every version; YAML 1.1): ``lr: 2e-4`` (an exponent without a dot) is read as the
  string '2e-4', and BasicSR's Adam then fails with a TypeError. The loader BasicSR uses
  (``basicsr.utils.options.ordered_yaml``, basicsr 1.4.2) also reads such numbers as floats,
  as YAML 1.2 does.
"""
import re

YAML_FLOAT = re.compile(
    r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$''', re.X)


def yaml_floats_with_exponents():
    """Make BasicSR's options loader read ``2e-4`` as a float (idempotent)."""
    from basicsr.utils.options import ordered_yaml
    loader = ordered_yaml()[0]
    if getattr(loader, '_kdsr_floats', False):
        return
    loader.add_implicit_resolver('tag:yaml.org,2002:float', YAML_FLOAT, list('-+0123456789.'))
    loader._kdsr_floats = True
