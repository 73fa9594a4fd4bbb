"""``path:pretrain_network_*`` read as every KDSR tool reads weights: ``.pth`` or ``.safetensors``.

BasicSR's ``load_network`` reads with a plain ``torch.load``; this one goes through
:func:`kdsr_arch.checkpoint.load_state_dict_file` (``weights_only=True`` for ``.pth``;
safetensors told by content), with BasicSR's ``param_key`` (falling back from a missing key to
``params``, as BasicSR does; ignored for a flat safetensors file) and ``strict`` meaning what
they mean there. An unreadable or mismatching file is an :class:`OptionError` naming the option.
"""
from basicsr.utils import get_root_logger

from kdsr_arch.checkpoint import load_into, load_state_dict_file

from ..errors import MissingFileError, OptionError


def basicsr_param_key(param_key):
    """BasicSR's ``param_key`` as :func:`load_state_dict_file` takes it: a missing key falls back
    to ``params``; None (the raw dict) and ``'auto'`` stay as they are."""
    return param_key if param_key in (None, 'auto') else (param_key, 'params')


class WeightsLoadMixin:
    """BasicSR's ``load_network`` contract, for ``.pth`` and ``.safetensors`` files."""

    def load_network(self, net, load_path, strict=True, param_key='params'):
        net = self.get_bare_model(net)
        try:
            state = load_state_dict_file(load_path, basicsr_param_key(param_key))
            self._print_different_keys_loading(net, state, strict)
            load_into(net, state, load_path, strict=strict)
        except (ValueError, KeyError, FileNotFoundError) as err:
            option = next((f'path:{k}: ' for k, v in self.opt['path'].items()
                           if k.startswith('pretrain_network') and v == load_path), '')
            error = MissingFileError if isinstance(err, FileNotFoundError) else OptionError
            raise error(f'{option}{err.args[0] if err.args else err}') from None
        get_root_logger().info(f'Loading {type(net).__name__} model from {load_path}, with param key: [{param_key}].')
