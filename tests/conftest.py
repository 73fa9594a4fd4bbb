import os
import sys

import cv2
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # reference_kdsr.py and helpers live beside the tests

PHOTOS = os.environ.get('KDSR_PHOTOS', os.path.join(HERE, '..', '..', 'shared', 'data', 'photos'))


@pytest.fixture(scope='session')
def photos():
    """The natural photos shipped beside the repository (``../shared/data/photos``)."""
    assert os.path.isdir(os.path.join(PHOTOS, 'val')), f'{PHOTOS}: photo set not found; set KDSR_PHOTOS to it.'
    return PHOTOS


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
