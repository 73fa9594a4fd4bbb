"""``kdsr-upscale``: upscale an image or a folder of images with a KDSR student.

Flags follow Real-ESRGAN's ``inference_realesrgan.py`` where the meaning is the same. With
no ``-m`` the built-in default model is used. Outputs are written atomically (a temporary
file, then a rename), existing outputs are skipped unless ``--overwrite``, inputs are never
written over, and a file that cannot be read gets one line and the run goes on; the exit
status is 1 if any file failed. Under ``torchrun --nproc_per_node=N`` the files are shared
out between the processes (each file once), one GPU each when CUDA is there.
"""
import argparse
import errno
import functools
import os
import sys

import cv2
import numpy as np

from .errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, MissingFileError, OptionError, tool
from .io import (EXTS_16BIT, MAX_PIXELS, ensure_writable_folder, first_line, is_image_name, peek_image, read_image,
                 remove_stale_partials, write_image_atomic)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='kdsr-upscale', description=__doc__.split('\n\n')[0])
    p.add_argument('-i', '--input', required=True, help='input image or folder')
    p.add_argument('-o', '--output', default='results', help='output folder (default: results)')
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
    p.add_argument('-g', '--gpu-id', type=int, default=None, help='CUDA device index (0 is the first GPU)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda', 'mps'])
    p.add_argument('--overwrite', action='store_true', help='replace outputs that already exist')
    p.add_argument('--max_pixels', type=int, default=MAX_PIXELS,
                   help=f'refuse inputs whose header claims more pixels (default {MAX_PIXELS}; 0: no limit)')
    args = p.parse_args(argv)
    for flag, value, low in (('-t/--tile', args.tile, 0), ('--tile_pad', args.tile_pad, 0),
                             ('--pre_pad', args.pre_pad, 0), ('-g/--gpu-id', args.gpu_id, 0),
                             ('--max_pixels', args.max_pixels, 0)):
        if value is not None and value < low:
            p.error(f'{flag} {value}: must be {low} or more')
    if args.outscale is not None and not 0 < args.outscale <= 64:
        p.error(f'-s/--outscale {args.outscale:g}: must be above 0 and at most 64')
    return args


def list_inputs(path):
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path))
                if is_image_name(f) and os.path.isfile(os.path.join(path, f))]
    raise FileNotFoundError(f'{path}: no such file or folder')


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


@tool('kdsr-upscale')
def main(argv=None):
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    from .upscaler import KDSRUpscaler

    try:
        files = list_inputs(args.input)
    except FileNotFoundError as err:
        raise MissingFileError(f'-i {err}') from None
    # names are planned over all inputs, so that shared stems stay distinct across torchrun ranks
    jobs, rank, world = shard(list(zip(files, output_stems(files, args.suffix))))
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
    remove_stale_partials(args.output)
    inputs = {os.path.realpath(f) for f in files}
    written = skipped = 0
    failed = []
    note = functools.partial(tqdm.write, file=sys.stderr)
    bar = tqdm(jobs, desc=f'upscaling{f" (rank {rank})" if world > 1 else ""}', unit='img',
               position=rank, disable=None)
    try:
        for path, stem in bar:
            try:
                info = peek_image(path)
                out_path = os.path.join(args.output, f'{stem}.{output_ext(args.ext, path, info and info.has_alpha, False)}')
                if os.path.realpath(out_path) in inputs:
                    raise ValueError(f'output {out_path} would overwrite an input; use another -o or --suffix')
                if os.path.exists(out_path) and not args.overwrite:  # decided before decoding
                    skipped += 1
                    continue
                img = read_image(path, args.max_pixels, info)
                if info is not None and info.frames > 1:
                    note(f'kdsr-upscale: {path}: {info.frames} frames; only the first is upscaled')
                has_alpha = img.ndim == 3 and img.shape[2] == 4
                actual = os.path.join(args.output, f'{stem}.{output_ext(args.ext, path, has_alpha, img.dtype == np.uint16)}')
                if actual != out_path:  # the header did not tell (e.g. 16 bits): the decoded image decides
                    out_path = actual
                    if os.path.exists(out_path) and not args.overwrite:
                        skipped += 1
                        continue
                if face_enhancer is not None and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
                    out, _ = face_enhancer.enhance(img)
                else:
                    if face_enhancer is not None:
                        note(f'kdsr-upscale: {path}: faces are restored on 8-bit RGB images only; upscaled '
                             'without face enhancement')
                    out, _ = upscaler.enhance(img, outscale=args.outscale, alpha_upsampler=args.alpha_upsampler)
                write_image_atomic(out_path, out)
                written += 1
            except (ValueError, OSError, cv2.error) as err:
                note(f'kdsr-upscale: failed {path}: {first_line(err)}')
                failed.append(path)
                if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                    note(f'kdsr-upscale: {args.output}: no space left on the device; stopping')
                    break
    except KeyboardInterrupt:
        bar.close()
        summary(written, skipped, failed, args.output, interrupted=True)
        return EXIT_INTERRUPTED
    bar.close()
    summary(written, skipped, failed, args.output)
    return EXIT_SOME_FAILED if failed else 0


def summary(written, skipped, failed, output, interrupted=False):
    print(f'kdsr-upscale: {"interrupted: " if interrupted else ""}{written} written, {skipped} skipped (output exists; '
          f'--overwrite to redo), {len(failed)} failed -> {output}')

if __name__ == '__main__':
    sys.exit(main())
