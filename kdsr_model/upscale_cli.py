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

Videos (mp4, mkv, webm, mov, avi -> mkv) and animated GIFs and WebPs, alone or in folders beside images,
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

import cv2

from .claims import Claims
from .errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, MissingFileError, OptionError, tool
from .folders import (Job, clean_outputs, list_inputs, output_folder, output_stems, prepare_output, shard,
                      upscale_file)
from .io import MAX_PIXELS, first_line
from .video import DEFAULT_CRF, IDR_MODES


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
    p.add_argument('--no_color_fix', action='store_true',
                   help="the net's colours as they come (default: the output keeps the input's coarse colour)")
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
                                tile=args.tile, tile_pad=args.tile_pad, pre_pad=args.pre_pad,
                                color_fix=not args.no_color_fix)
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
