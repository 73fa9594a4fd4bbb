"""Folder runs of ``kdsr-upscale``: which files a run reads (:func:`list_inputs`), the names
and folders its outputs get, and the work on one input under a claim (:func:`upscale_file`).

The rules (recursion, mirrored subfolders, shared stems, claims, skip-if-done) are told in
``kdsr-upscale --help`` (:mod:`kdsr_model.upscale_cli`); the tool is argparse and a loop over
:func:`upscale_file`.
"""
import argparse
import os
from dataclasses import dataclass

import numpy as np

from .claims import Claims, claim_path, describe_owner, remove_stale_claims
from .errors import OptionError
from .io import (EXTS_16BIT, PNG_GRAY_ALPHA, ensure_writable_folder, gray_alpha, is_image_name, peek_image, png_header,
                 read_image, remove_stale_partials, write_image_atomic)
from .video import is_video_file, is_video_name
from .video import output_name as video_output_name


def list_inputs(path, recursive=True, skip=None):
    """The inputs of ``-i path``, and the subfolders that could not be read, as ``(folder, error)``.

    A file is its own input. A folder gives its images and videos in name order, then (``recursive``) its
    subfolders' depth first. Hidden files and folders are not inputs; not walked either:
    temporary folders (a name with '.partial'), the folder ``skip`` (the output folder, by real
    path) and what lies inside it, and symlinked folders that lead back inside ``path`` (their
    images are listed already) or to a real folder walked before, so that a symlink loop ends.
    Raises FileNotFoundError when ``path`` does not exist, OSError when it cannot be listed.
    """
    if os.path.isfile(path):
        return [path], []
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{path}: no such file or folder')
    root = os.path.realpath(path)
    skip = os.path.realpath(skip) if skip else None
    files, unreadable, seen = [], [], {root}

    def walk(folder):
        try:
            names = sorted(os.listdir(folder))
        except OSError as err:
            if folder == path:
                raise
            unreadable.append((folder, err))
            return
        subfolders = []
        for name in names:
            full = os.path.join(folder, name)
            if name.startswith('.'):
                continue
            if os.path.isdir(full):
                subfolders.append(full)
            elif (is_image_name(name) or is_video_name(name)) and os.path.isfile(full):
                files.append(full)
        for sub in subfolders if recursive else ():
            if walkable(sub, root, skip, seen):
                walk(sub)

    walk(path)
    return files, unreadable


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def walkable(folder, root, skip, seen):
    """Whether :func:`list_inputs` enters the subfolder ``folder`` of the input folder whose real
    path is ``root``; ``skip``: the output folder's real path; ``seen``: the real paths walked,
    to which ``folder``'s is added."""
    if '.partial' in os.path.basename(folder):
        return False
    real = os.path.realpath(folder)
    if (skip and _inside(real, skip)) or real in seen:
        return False
    if os.path.islink(folder) and _inside(real, root):
        return False
    seen.add(real)
    return True


def output_folder(output, input_path, path):
    """Where the output of the input ``path`` goes: ``output``, or for a folder input the
    subfolder of ``output`` at the place of ``path``'s folder under ``input_path``."""
    if not os.path.isdir(input_path):
        return output
    rel = os.path.relpath(os.path.dirname(path), input_path)
    return output if rel == '.' else os.path.join(output, rel)


def output_ext(args_ext, in_path, has_alpha, is_16bit):
    """The output format: ``--ext``, or with ``auto`` the input's (png where the input's format
    cannot hold its alpha channel or 16 bits)."""
    ext = os.path.splitext(in_path)[1][1:].lower() if args_ext == 'auto' else args_ext
    ext = {'jpeg': 'jpg', 'tiff': 'tif'}.get(ext, ext)
    if args_ext == 'auto' and ((has_alpha and ext in ('jpg', 'bmp')) or (is_16bit and ext not in EXTS_16BIT)):
        ext = 'png'
    return ext


def output_stems(files, suffix):
    """Output names without extension: ``<stem>_<suffix>``; inputs of one folder that share a
    stem (``photo.png``, ``photo.jpg``) keep their extension in it (``photo_png_out``), so that
    no two inputs write the same file."""
    groups = {}
    for path in files:
        key = (os.path.dirname(path), os.path.splitext(os.path.basename(path))[0].lower())
        groups[key] = groups.get(key, 0) + 1
    stems = []
    for path in files:
        stem, ext = os.path.splitext(os.path.basename(path))
        if groups[(os.path.dirname(path), stem.lower())] > 1:
            stem = f'{stem}_{ext[1:]}'
        stems.append(f'{stem}_{suffix}' if suffix else stem)
    return stems


def prepare_output(output, input_path):
    """Create the output folder and check that it is writable, before any work."""
    if os.path.isdir(input_path) and os.path.realpath(output) == os.path.realpath(input_path):
        raise OptionError(f'-o {output} is the input folder; outputs would become inputs of the next run. '
                          'Choose another -o (a folder inside -i is fine).')
    if os.path.exists(output) and not os.path.isdir(output):
        raise OptionError(f'-o {output} exists and is not a folder; name a folder.')
    ensure_writable_folder(output, f'-o {output}')


def shard(files):
    """This process's share of ``files`` under torchrun (RANK/WORLD_SIZE), else all of them."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    return files[rank::world], rank, world


def clean_outputs(folders, note):
    """Remove what killed earlier runs left in the output ``folders`` that exist: temporary files
    and abandoned claims (a notice for each claim)."""
    for folder in folders:
        if os.path.isdir(folder):
            remove_stale_partials(folder)
            for path, owner in remove_stale_claims(folder):
                note(f'kdsr-upscale: removed the abandoned claim {path} of {describe_owner(owner)}')


def remove_empty_folders(folder, top):
    """Remove ``folder`` and its parents below ``top`` while they are empty: the subfolders of
    ``-o`` made for a claim whose output was not written."""
    folder, top = os.path.abspath(folder), os.path.abspath(top)
    while folder != top and _inside(folder, top):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or not ours to remove)
            return
        folder = os.path.dirname(folder)


@dataclass
class Job:
    """What the inputs of one run share."""
    args: argparse.Namespace
    upscaler: object
    face_enhancer: object
    inputs: set  # real paths of all inputs, which are never written over
    claims: Claims
    note: object  # prints one line above the progress bar
    started: float  # time.time() at the start


def finished(out_path, job):
    """'skipped' when ``out_path`` exists; with ``--overwrite`` 'claimed' when it was written
    since this run began (by another process sharing the folder) and None when older."""
    if not os.path.exists(out_path):
        return None
    if not job.args.overwrite:
        return 'skipped'
    return 'claimed' if os.path.getmtime(out_path) >= job.started else None


def upscale_file(path, stem, folder, job):
    """Upscale ``path`` to ``<folder>/<stem>.<ext>``: 'written', 'skipped' (the output exists;
    decided before decoding and before any claim) or 'claimed' (another process works on it, or
    wrote it during this run). ValueError, OSError or cv2.error for an unusable input."""
    args = job.args
    video = is_video_file(path)
    info = None if video else peek_image(path)
    if video:
        out_path = os.path.join(folder, stem + os.path.splitext(video_output_name(path))[1])
    else:
        out_path = os.path.join(folder, f'{stem}.{output_ext(args.ext, path, info and info.has_alpha, False)}')
    if os.path.realpath(out_path) in job.inputs:
        raise ValueError(f'output {out_path} would overwrite an input; use another -o or --suffix')
    if os.path.exists(out_path) and not args.overwrite:
        return 'skipped'
    claim = claim_path(folder, stem)
    held, owner = job.claims.take(claim)
    if not held:
        return 'claimed'
    if owner is not None:
        job.note(f'kdsr-upscale: {path}: took over the abandoned claim of {describe_owner(owner)}')
    try:
        return upscale_video_claimed(path, out_path, job) if video else upscale_claimed(path, out_path, info, job)
    finally:
        job.claims.release(claim)
        remove_empty_folders(folder, args.output)


def upscale_claimed(path, out_path, info, job):
    """The work of :func:`upscale_file` once the input is claimed: decode, upscale, write."""
    args = job.args
    done = finished(out_path, job)  # another process may have written it before our claim
    if done:
        return done
    img = read_image(path, args.max_pixels, info)
    if info is not None and info.frames > 1:
        job.note(f'kdsr-upscale: {path}: {info.frames} frames; only the first is upscaled')
    has_alpha = img.ndim == 3 and img.shape[2] == 4
    actual = f'{os.path.splitext(out_path)[0]}.{output_ext(args.ext, path, has_alpha, img.dtype == np.uint16)}'
    if actual != out_path:  # the header did not tell (e.g. 16 bits): the decoded image decides
        out_path = actual
        done = finished(out_path, job)
        if done:
            return done
    if job.face_enhancer is not None and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        out, _ = job.face_enhancer.enhance(img)
    else:
        if job.face_enhancer is not None:
            job.note(f'kdsr-upscale: {path}: faces are restored on 8-bit RGB images only; upscaled '
                     'without face enhancement')
        out, _ = job.upscaler.enhance(img, outscale=args.outscale, alpha_upsampler=args.alpha_upsampler)
    if has_alpha and out_path.endswith('.png') and (png_header(path) or (None,))[0] == PNG_GRAY_ALPHA:
        out = gray_alpha(out)  # OpenCV read the gray + alpha PNG as BGRA
    write_image_atomic(out_path, out)
    return 'written'


def upscale_video_claimed(path, out_path, job):
    """A video's (or animated GIF's or WebP's) work once it is claimed: :func:`kdsr_model.video.upscale_video`
    with the video flags, a frame progress bar, and its notes printed."""
    from tqdm import tqdm

    from .video import upscale_video
    done = finished(out_path, job)
    if done:
        return done
    args = job.args
    with tqdm(desc=os.path.basename(path), unit='frame', leave=False, disable=None) as bar:

        def progress(frames, total):
            bar.total = total
            bar.update(frames - bar.n)

        result = upscale_video(job.upscaler, path, out_path, idr_mode=args.idr, video_codec=args.video_codec,
                               crf=args.crf, preset=args.preset, start=args.start, duration=args.duration,
                               progress=progress)
    for line in result.notes:
        job.note(f'kdsr-upscale: {path}: {line}')
    return 'written'
