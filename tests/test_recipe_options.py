"""The default model's recipe options (options/default) are valid and their committed starts load.

Each stage of docs/MODEL.md is an options file that a later session reruns hours later; a
misspelt mixture key or a recipe checkpoint that no longer fits the net would only show when
that run starts. These checks read the options as ``kdsr-train`` does, with the data folders
pointed at a tiny folder (the recipe data are not in the repository).
"""
import copy
import os

import pytest
import torch
from basicsr.archs import build_network

from kdsr_arch.checkpoint import detect_kdsr, load_state_dict_file
from kdsr_model.data.mixture import MixtureDegrader
from kdsr_model.models.loading import basicsr_param_key
from kdsr_model.models.teacher import build_frozen_teacher
from kdsr_model.options_check import check_options, load_options
from conftest import REPO

RECIPE_DIR = os.path.join(REPO, 'options', 'default')
RECIPES = sorted(f for f in os.listdir(RECIPE_DIR) if f.endswith('.yml'))
COMMITTED = 'models/recipe/'


def _with_data(opt, folder):
    opt = copy.deepcopy(opt)
    for ds in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            if ds.get(key) is not None:
                ds[key] = str(folder)
        for key in ('meta_info', 'meta_info_file'):
            if ds.get(key) is not None:
                ds[key] = str(folder / 'a.png')
    return opt


def test_there_are_recipes():
    assert 'train_default_v14_x4ST.yml' in RECIPES and len(RECIPES) >= 10


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_options_pass_the_checks_and_build(name, tmp_path):
    (tmp_path / 'a.png').write_bytes(b'')
    opt = load_options(os.path.join(RECIPE_DIR, name))
    check_options(_with_data(opt, tmp_path), is_train=True)
    net_g = build_network(copy.deepcopy(opt['network_g']))
    if opt.get('degradation_mixture'):
        mixture = MixtureDegrader(opt)
        assert abs(sum(mixture.weights) - 1) < 1e-9
    path = (opt.get('path') or {}).get('pretrain_network_g')
    if path and path.startswith(COMMITTED):  # a committed start: it must load into network_g
        state = load_state_dict_file(os.path.join(REPO, path), basicsr_param_key(opt['path'].get('param_key_g')))
        if detect_kdsr(state, path).is_teacher == (opt['network_g']['type'] == 'BlindSR_TA'):
            net_g.load_state_dict(state, strict=True)
        else:  # a student started from a teacher: the model copies the shared parts
            assert detect_kdsr(state, path).is_teacher
    teacher = (opt.get('path') or {}).get('pretrain_network_TA')
    if teacher and teacher.startswith(COMMITTED):
        topt = copy.deepcopy(opt)
        topt['path']['pretrain_network_TA'] = os.path.join(REPO, teacher)
        net_ta = build_frozen_teacher(topt, torch.device('cpu'), opt['scale'])
        assert not any(p.requires_grad for p in net_ta.parameters())
