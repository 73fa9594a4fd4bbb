"""``kdsr-upscale``: upscale an image or a folder of images with a KDSR student.

Flags follow Real-ESRGAN's ``inference_realesrgan.py`` where the meaning is the same. With
no ``-m`` the built-in default model is used. Outputs are written atomically (a temporary
file, then a rename), existing outputs are skipped unless ``--overwrite``, inputs are never
written over, and a file that cannot be read gets one line and the run goes on; the exit
status is 1 if any file failed.

Folders: subfolders are walked too (``--no_recursive``: the top level only) and mirrored under
``-o``: ``-i in -o out`` writes ``in/a/b/x.png`` to ``out/a/b/x_out.png``, making a subfolder
only for an output. Not walked: hidden folders (a name starting with '.'), temporary ones (a
name with '.partial'), and the output folder (by real path: ``-o`` may lie inside ``-i``). A
symlinked folder is followed when it leads outside ``-i``, once per real folder; one that
leads back inside ``-i`` is not (its images are listed already), so a symlink loop ends.

A gray + alpha PNG (colour type 4) gives a gray + alpha PNG of the same bit depth (8 or 16):
its gray is the upscaled colour image's (OpenCV's BGR2GRAY). With ``--ext`` other than png,
the output is RGBA as before.

Several processes can share the work. Under ``torchrun --nproc_per_node=N`` the files are
dealt out (each file once, one GPU each when CUDA is there). Besides, processes started by
hand on the same ``-i`` and ``-o``, on this machine or on machines sharing the folders, split
the inputs by claims: before working on an input, a process creates ``.<output stem>.claim``
beside its output (atomically, so only one gets it; JSON with host, PID and start time),
touches it every 10 s and removes it once the output is written, or on failure or Ctrl-C.
The others leave that input alone ("claimed by another process" in the summary). A claim is
abandoned when its process is gone (same host) or when it was not touched for 10 minutes
(any host); it is then taken over, with a notice. With ``--overwrite``, an output written
since this run began is another process's work and is not redone.

Videos (mp4, mkv, webm, mov, avi -> mkv) and animated GIFs, alone or in folders beside images,
are upscaled frame by frame with one degradation estimate (IDR) per shot (``--idr``), audio
and timestamps kept, into ``<stem>_out.<ext>`` (:mod:`kdsr_model.video`; needs PyAV:
``pip install 'kdsr[video]'``, else each video fails with that one line and the rest goes on).
"""
import argparse
import errno
import functools
import os
import sys
import textwrap
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, MissingFileError, OptionError, tool
from .claims import Claims, claim_path, describe_owner, remove_stale_claims
from .io import (EXTS_16BIT, MAX_PIXELS, PNG_GRAY_ALPHA, ensure_writable_folder, first_line, gray_alpha, is_image_name,
                 peek_image, png_header, read_image, remove_stale_partials, write_image_atomic)
from .video import DEFAULT_CRF, IDR_MODES, is_video_file, is_video_name
from .video import output_name as video_output_name


def epilog():
    """The module docstring after its first line, as ``--help`` prints it below the flags."""
    return '\n\n'.join(textwrap.fill(' '.join(par.replace('``', '').split()), 79) for par in __doc__.split('\n\n')[1:])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='kdsr-upscale', description=__doc__.split('\n\n')[0],
                                epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-i', '--input', required=True,
                   help='input image or folder (with its subfolders, unless --no_recursive)')
    p.add_argument('-o', '--output', default='results',
                   help="output folder (default: results); a folder input's subfolders are mirrored in it")
    p.add_argument('--no_recursive', action='store_true',
                   help="a folder input's top level only, not its subfolders (default: all of them; hidden "
                   'folders and -o skipped, symlinked folders followed only outside -i, once each)')
    p.add_argument('-m', '--model', default=None, help='KDSR student checkpoint (default: the built-in model)')
    p.add_argument('-s', '--outscale', type=float, default=None, help="final scale (default: the model's)")
    p.add_argument('--suffix', default='out', help='suffix of the output names (default: out; "" for none)')
    p.add_argument('--ext', default='auto', choices=['auto', 'png', 'jpg', 'webp', 'tif', 'bmp'],
                   help='output format; auto: as the input (png for alpha or 16-bit in a format without them)')
    p.add_argument('-t', '--tile', type=int, default=0, help='LR tile size, 0: automatic (whole image if it fits)')
    p.add_argument('--tile_pad', type=int, default=None, help='tile overlap in LR pixels (default: receptive radius)')
    p.add_argument('--pre_pad', type=int, default=0, help='reflect padding at the bottom/right borders')
    p.add_argument('--fp32', action='store_true',
                   help='full precision: no fp16 on CUDA, no bf16 on CPU (the defaults where the hardware has them)')
    p.add_argument('--bf16', action='store_true',
                   help='CPU: bfloat16 autocast even without native bf16 (the default on CPUs with AVX512-BF16/AMX)')
    p.add_argument('--alpha_upsampler', default='kdsr', choices=['kdsr', 'realesrgan', 'bicubic'],
                   help="alpha channel: through the KDSR net ('realesrgan' means the same) or bicubic")
    p.add_argument('--face_enhance', action='store_true', help='restore faces with GFPGAN (local weights, see below)')
    p.add_argument('--face_model', default=None, help='GFPGAN weights file (default: $KDSR_GFPGAN_MODEL)')
    p.add_argument('--facexlib_dir', default=None,
                   help="folder with facexlib's detection_Resnet50_Final.pth and parsing_parsenet.pth "
                   '(default: $KDSR_FACEXLIB_DIR)')
    p.add_argument('-g', '--gpu_id', '--gpu-id', type=int, default=None, help='CUDA device index (0 is the first GPU)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda', 'mps'])
    p.add_argument('--overwrite', action='store_true',
                   help='replace outputs that already exist (not those that another process wrote since '
                   'this run began)')
    p.add_argument('--idr', default='per-shot', choices=IDR_MODES,
                   help='videos: one degradation estimate per shot (default), per frame, or for the whole video')
    p.add_argument('--video_codec', default=None,
                   help='videos: encoder (default: libx264 for mp4/mkv/mov, libvpx-vp9 for webm, gif for gif)')
    p.add_argument('--crf', type=int, default=DEFAULT_CRF, help=f'videos: constant rate factor (default {DEFAULT_CRF})')
    p.add_argument('--preset', default=None, help='videos: encoder preset (x264: default medium)')
    p.add_argument('--start', type=float, default=None, help='videos: start at this second (a quick preview)')
    p.add_argument('--duration', type=float, default=None, help='videos: only this many seconds')
    p.add_argument('--max_pixels', type=int, default=MAX_PIXELS,
                   help=f'refuse inputs whose header claims more pixels (default {MAX_PIXELS}; 0: no limit)')
    args = p.parse_args(argv)
    for flag, value, low in (('-t/--tile', args.tile, 0), ('--tile_pad', args.tile_pad, 0),
                             ('--pre_pad', args.pre_pad, 0), ('-g/--gpu_id', args.gpu_id, 0),
                             ('--max_pixels', args.max_pixels, 0), ('--crf', args.crf, 0),
                             ('--start', args.start, 0)):
        if value is not None and value < low:
            p.error(f'{flag} {value}: must be {low} or more')
    if args.duration is not None and not args.duration > 0:
        p.error(f'--duration {args.duration:g}: must be above 0')
    if args.outscale is not None and not 0 < args.outscale <= 64:
        p.error(f'-s/--outscale {args.outscale:g}: must be above 0 and at most 64')
    return args


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
    """A video's (or animated GIF's) work once it is claimed: :func:`kdsr_model.video.upscale_video`
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


def summary(counts, failed, output, interrupted=False):
    claimed = f'{counts["claimed"]} claimed by another process, ' if counts['claimed'] else ''
    print(f'kdsr-upscale: {"interrupted: " if interrupted else ""}{counts["written"]} written, {counts["skipped"]} '
          f'skipped (output exists; --overwrite to redo), {claimed}{len(failed)} failed -> {output}')


@tool('kdsr-upscale')
def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    import torch
    from tqdm import tqdm

    from .upscaler import KDSRUpscaler

    try:
        files, unreadable = list_inputs(args.input, not args.no_recursive, args.output)
    except FileNotFoundError as err:
        raise MissingFileError(f'-i {err}') from None
    except OSError as err:
        raise OptionError(f'-i {args.input}: cannot read it ({err.strerror or first_line(err)})') from None
    # names are planned over all inputs, so that shared stems stay distinct across torchrun ranks
    folders = [output_folder(args.output, args.input, f) for f in files]
    jobs, rank, world = shard(list(zip(files, output_stems(files, args.suffix), folders)))
    prepare_output(args.output, args.input)
    gpu_id = args.gpu_id
    if world > 1 and gpu_id is None and torch.cuda.is_available():
        gpu_id = int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()
    try:
        upscaler = KDSRUpscaler(args.model, device=args.device, gpu_id=gpu_id, half=not args.fp32,
                                bf16=False if args.fp32 else (True if args.bf16 else None),
                                tile=args.tile, tile_pad=args.tile_pad, pre_pad=args.pre_pad)
        face_enhancer = None
        if args.face_enhance:
            from .faces import FaceEnhancer
            face_enhancer = FaceEnhancer(upscaler, args.outscale or upscaler.scale, args.face_model, args.facexlib_dir)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise OptionError(str(err)) from None
    note = functools.partial(tqdm.write, file=sys.stderr)
    if upscaler.precision_note and rank == 0:
        note(f'kdsr-upscale: {upscaler.precision_note}')
    clean_outputs(sorted({folder for _, _, folder in jobs}), note)
    job = Job(args, upscaler, face_enhancer, {os.path.realpath(f) for f in files}, Claims(), note, started)
    counts = {'written': 0, 'skipped': 0, 'claimed': 0}
    failed = []
    for folder, err in unreadable if rank == 0 else ():
        note(f'kdsr-upscale: failed {folder}: cannot read the folder ({err.strerror or first_line(err)})')
        failed.append(folder)
    bar = tqdm(jobs, desc=f'upscaling{f" (rank {rank})" if world > 1 else ""}', unit='img',
               position=rank, disable=None)
    try:
        for path, stem, folder in bar:
            try:
                counts[upscale_file(path, stem, folder, job)] += 1
            except (ValueError, OSError, cv2.error, OptionError) as err:  # OptionError: PyAV missing for a video
                note(f'kdsr-upscale: failed {path}: {getattr(err, "reason", None) or first_line(err)}')
                failed.append(path)
                if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                    note(f'kdsr-upscale: {args.output}: no space left on the device; stopping')
                    break
    except KeyboardInterrupt:
        bar.close()
        summary(counts, failed, args.output, interrupted=True)
        return EXIT_INTERRUPTED
    finally:
        job.claims.close()
    bar.close()
    summary(counts, failed, args.output)
    return EXIT_SOME_FAILED if failed else 0


if __name__ == '__main__':
    sys.exit(main())
