"""Test data for :func:`kdsr_model.evaluation.evaluate`: ``kdsr-testset`` folders and paired
``--lq`` / ``--gt`` folders, as :class:`Source` lists of (GT, LR per degradation) paths."""
import json
import os
from collections import defaultdict
from pathlib import Path

import cv2

from ..errors import MissingFileError, OptionError
from ..io import IMG_EXTS, is_image_name


def read_image(path):
    """Read an image as an 8-bit BGR array (OpenCV's IMREAD_COLOR); ValueError with the reason if unusable."""
    if not os.path.isfile(path):
        raise ValueError('no such file')
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError('not an image, truncated, or a format OpenCV cannot read')
    return img


class Source:
    """A test set (one column, or one per degradation) as a list of images.

    Args:
        name (str): Column name.
        scale (int): SR scale of the data.
        tags (list[str | None]): Degradation tags (``[None]`` for paired folders).
        items (list[tuple]): ``(image stem, GT path, [(tag, LR path)])`` per image.
        origin (dict): Where the data came from (for the JSON output).
    """

    def __init__(self, name, scale, tags, items, origin):
        self.name, self.scale, self.tags, self.items, self.origin = name, scale, tags, items, origin
        self.crop = None

    def info(self):
        return {
            'name': self.name,
            'scale': self.scale,
            'crop': self.crop,
            'degradations': [t for t in self.tags if t],
            'n_images': len(self.items),
            **self.origin
        }


def _list_images(folder):
    return [f for f in sorted(os.listdir(folder)) if is_image_name(f)]


def read_set(folder):
    """A ``kdsr-testset`` folder -> :class:`Source` (OptionError naming what is missing)."""
    if not os.path.isdir(folder):
        raise MissingFileError(f'--set {folder}: no such folder.')
    proto_path = os.path.join(folder, 'protocol.json')
    if not os.path.isfile(proto_path):
        raise MissingFileError(f'--set {folder}: no protocol.json; give a folder written by kdsr-testset.')
    try:
        proto = json.loads(Path(proto_path).read_text())
        scale, tags = int(proto['scale']), list(proto['degradations'])
    except (ValueError, KeyError, TypeError) as err:
        raise OptionError(f'--set {proto_path}: not a kdsr-testset protocol file ({err}).') from None
    for sub in ['HR'] + tags:
        if not os.path.isdir(os.path.join(folder, sub)):
            raise MissingFileError(f'--set {folder}: folder {sub}/ listed in protocol.json is missing.')
    names = _list_images(os.path.join(folder, 'HR'))
    if not names:
        raise OptionError(f'--set {folder}: HR/ holds no images.')
    items = [(os.path.splitext(n)[0], os.path.join(folder, 'HR', n), [(t, os.path.join(folder, t, n)) for t in tags])
             for n in names]
    name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    return Source(name, scale, tags, items, {'set': folder, 'protocol': proto.get('protocol')})


def _scale_of_first_readable_pair(items):
    for _, gt_path, ((_, lr_path), ) in items:
        try:
            return max(1, read_image(gt_path).shape[0] // read_image(lr_path).shape[0])
        except ValueError:
            continue
    return None


def read_paired(lq_dir, gt_dir, scale=None):
    """Paired ``--lq`` / ``--gt`` folders -> :class:`Source`, files matched by stem.

    Args:
        lq_dir (str): Folder of LR images.
        gt_dir (str): Folder of HR images with the same stems.
        scale (int | None): SR scale; None: read from the first pair's heights.
    """
    for flag, folder in (('--lq', lq_dir), ('--gt', gt_dir)):
        if not os.path.isdir(folder):
            raise MissingFileError(f'{flag} {folder}: no such folder.')
    gts = defaultdict(list)
    for n in _list_images(gt_dir):
        gts[os.path.splitext(n)[0]].append(n)
    items = []
    for n in _list_images(lq_dir):
        stem = os.path.splitext(n)[0]
        lr_path = os.path.join(lq_dir, n)
        if len(gts[stem]) != 1:
            what = 'no GT' if not gts[stem] else f'{len(gts[stem])} GT files ({", ".join(gts[stem])})'
            raise OptionError(f'--lq {lr_path}: {what} of the same name in --gt {gt_dir}.')
        items.append((stem, os.path.join(gt_dir, gts[stem][0]), [(None, lr_path)]))
    if not items:
        raise OptionError(f'--lq {lq_dir}: no images ({", ".join(IMG_EXTS)}).')
    if scale is None:
        scale = _scale_of_first_readable_pair(items)
        if scale is None:
            raise OptionError(f'--lq {lq_dir}: no readable LR/GT pair to find the scale from.')
    lq_abs, gt_abs = os.path.abspath(lq_dir), os.path.abspath(gt_dir)
    parent = os.path.dirname(os.path.normpath(lq_abs))
    same_parent = parent == os.path.dirname(os.path.normpath(gt_abs)) and os.path.basename(parent)
    name = os.path.basename(parent) if same_parent else os.path.basename(os.path.normpath(lq_abs))
    return Source(name, scale, [None], items, {'lq': lq_dir, 'gt': gt_dir})


def fit_gt(gt, lr, scale):
    """The GT cropped to ``scale`` x the LR size (bottom/right), or ValueError if it does not fit."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if not (h <= gt.shape[0] < h + scale and w <= gt.shape[1] < w + scale):
        raise ValueError(f'a {lr.shape[1]}x{lr.shape[0]} LR at x{scale} needs a {w}x{h} GT, '
                         f'the GT is {gt.shape[1]}x{gt.shape[0]}')
    return gt[:h, :w]
