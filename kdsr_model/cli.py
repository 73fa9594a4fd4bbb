"""What ``kdsr-train`` and ``kdsr-test`` share around BasicSR's pipelines."""
import argparse
import glob
import os
import shutil
import sys

from .compat import install_training_patches
from .errors import OptionError
from .options_check import check_options, load_options


def _run_folders(root_path, opt, is_train, debug):
    """The folders BasicSR creates for this run (experiments/<name>, tb_logger/<name> or results/<name>)."""
    name = f'debug_{opt["name"]}' if debug and not opt['name'].startswith('debug') else opt['name']
    roots = ('experiments', 'tb_logger') if is_train else ('results', )
    return [os.path.join(root_path, root, name) for root in roots]


def _snapshot(folders):
    """Which run folders exist, and the archives BasicSR already made of them."""
    return [(os.path.exists(f), set(glob.glob(glob.escape(f) + '_archived_*'))) for f in folders]


def _undo_start(folders, before):
    """After a failed start: remove the run folders it made and put back any it archived."""
    for folder, (was_there, old_archives) in zip(folders, before):
        new_archives = sorted(set(glob.glob(glob.escape(folder) + '_archived_*')) - old_archives)
        if os.path.isdir(folder) and (not was_there or new_archives):
            shutil.rmtree(folder, ignore_errors=True)
        if was_there and new_archives and not os.path.exists(folder):
            os.replace(new_archives[-1], folder)
        root = os.path.dirname(folder)
        if not was_there and os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)  # an experiments/ or tb_logger/ made for this run alone


def run_pipeline(pipeline, root_path, is_train=True, argv=None):
    """Run a BasicSR pipeline rooted at ``root_path``, its options checked first.

    An :class:`OptionError` (bad options before the start, or from our models while BasicSR
    builds them) puts the run's folders back as they were (no new experiments/<name>, an
    archived one restored) and is raised on, for the tools' one wrapper (:func:`errors.tool`).
    ``argv`` (without the program name) replaces ``sys.argv[1:]``, which BasicSR's parser reads."""
    install_training_patches()
    if argv is None:
        return _run_pipeline(pipeline, root_path, is_train)
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        return _run_pipeline(pipeline, root_path, is_train)
    finally:
        sys.argv = saved


def _run_pipeline(pipeline, root_path, is_train):
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument('-opt')
    flags.add_argument('--debug', action='store_true')
    flags.add_argument('--auto_resume', action='store_true')
    known, _ = flags.parse_known_args()
    folders, before = [], []
    try:
        if known.opt is not None:  # without -opt, BasicSR's own parser says what is missing
            opt = load_options(known.opt)
            check_options(opt, is_train)
            folders = _run_folders(root_path, opt, is_train, known.debug)
            before = _snapshot(folders)
        pipeline(root_path)
    except OptionError:
        if folders and not known.auto_resume:
            _undo_start(folders, before)
        raise
