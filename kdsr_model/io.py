"""Image files as every tool meets them: listing, reading (bit depth, alpha, EXIF), atomic writes,
gray + alpha PNGs (which OpenCV cannot write), and claims that let processes share a folder.

Nothing here prints; errors are ``ValueError``/``OSError`` with a short reason, which the
tools turn into one line naming the file.
"""
import os
import socket
import struct
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from kdsr_arch.checkpoint import first_line  # noqa: F401 (the tools import it from here)

from .errors import MissingFileError, OptionError

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp')
MAX_PIXELS = 1 << 27  # 134 M pixels: larger headers are refused unless the caller raises the limit
ALPHA_MODES = ('RGBA', 'LA', 'La', 'RGBa', 'PA')
EXTS_16BIT = ('png', 'tif', 'tiff')
EXIF_EXTS = ('.jpg', '.jpeg', '.tif', '.tiff', '.webp')
HOST = socket.gethostname()
HOST_TAG = f'h{zlib.crc32(HOST.encode()):08x}'  # this host in temporary file names (safe characters only)
CLAIM_STALE_S = 600  # a claim, or another host's temporary file, untouched this long is abandoned
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_GRAY, PNG_RGB, PNG_PALETTE, PNG_GRAY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6  # IHDR colour types


def is_image_name(name):
    return name.lower().endswith(IMG_EXTS) and not name.startswith('.')


def list_images(folder):
    """The image files of ``folder`` (not hidden, by extension), sorted by name."""
    return sorted(f for f in os.listdir(folder) if is_image_name(f) and os.path.isfile(os.path.join(folder, f)))


def exif_rotation(path):
    """The EXIF orientation tag of a JPEG/TIFF/WebP (1 if none)."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return im.getexif().get(0x0112, 1)
    except Exception:
        return 1


def apply_orientation(img, orientation):
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


@dataclass
class ImageInfo:
    """What an image file's header says (read without decoding the pixels)."""
    width: int
    height: int
    frames: int
    mode: str
    format: str

    @property
    def has_alpha(self):
        return self.mode in ALPHA_MODES


def peek_image(path):
    """The header of an image file as :class:`ImageInfo` (Pillow reads only the header), or None
    when Pillow cannot identify it (OpenCV may still read it)."""
    from PIL import Image, UnidentifiedImageError
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the caller compares the size with its own limit
    try:
        with Image.open(path) as im:
            return ImageInfo(im.width, im.height, getattr(im, 'n_frames', 1), im.mode, im.format or '')
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def png_header(path):
    """``(colour type, bit depth)`` from a PNG file's IHDR chunk (bytes 25 and 24 of the file:
    :data:`PNG_GRAY`, :data:`PNG_RGB`, :data:`PNG_PALETTE`, :data:`PNG_GRAY_ALPHA`,
    :data:`PNG_RGBA`), or None when the file is not a PNG (whatever its name)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b'IHDR':
        return None
    return head[25], head[24]


def _check_jpeg_complete(path):
    """OpenCV decodes a truncated JPEG with a warning and grey rows; Pillow says so."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
    except OSError as err:
        raise ValueError(f'broken or truncated JPEG ({first_line(err)})') from None


def read_image(path, max_pixels=MAX_PIXELS, info=None):
    """Read as OpenCV does, keeping bit depth, alpha and grayscale; EXIF orientation applied.

    Raises ValueError with a short reason for files that are not usable images: empty, not an
    image, truncated, more than ``max_pixels`` pixels in the header (checked before decoding),
    unsupported pixel type or channel count. ``info``: :func:`peek_image`'s result, if known.
    """
    if os.path.getsize(path) == 0:
        raise ValueError('empty file')
    info = info or peek_image(path)
    if info is not None and max_pixels and info.width * info.height > max_pixels:
        raise ValueError(f'{info.width}x{info.height} is over the limit of {max_pixels} pixels '
                         '(a decompression bomb?); raise --max_pixels to read it')
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError('not an image, truncated, or a format OpenCV cannot read')
    if info is not None and info.format == 'JPEG':
        _check_jpeg_complete(path)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'unsupported pixel type {img.dtype} (8- or 16-bit images only)')
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise ValueError(f'unsupported channel count {img.shape[2]}')
    if path.lower().endswith(EXIF_EXTS):
        img = apply_orientation(img, exif_rotation(path))
    return img


def check_input_output(hr_dir, out_dir):
    """A tool's ``--hr`` must be a folder and its ``--out`` must not be it or hold it: no tool
    writes into (or over) its inputs. :class:`MissingFileError` / :class:`OptionError` otherwise."""
    if not os.path.isdir(hr_dir):
        raise MissingFileError(f'--hr {hr_dir}: not a folder.')
    hr, out = os.path.realpath(hr_dir), os.path.realpath(out_dir)
    if hr == out or hr.startswith(out + os.sep):
        raise OptionError(f'--out {out_dir} holds the --hr folder; nothing is written into (or over) an input '
                          'folder. Choose another --out.')


def ensure_writable_folder(folder, label):
    """Create ``folder`` if needed and prove a file can be written there (root, read-only mounts,
    full disks and files in the way included); :class:`OptionError` naming ``label`` otherwise."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.kdsr-write-check-'):
            pass
    except OSError as err:
        raise OptionError(f'{label}: cannot write there ({err.strerror or first_line(err)}).') from None


def partial_path(path):
    """The temporary name beside ``path`` that an atomic write uses: hidden, with our PID and
    host (:data:`HOST_TAG`), so that a folder shared between machines tells whose it is."""
    base = os.path.basename(path)
    owner = f'{os.getpid()}-{HOST_TAG}'
    return os.path.join(os.path.dirname(path) or '.', f'.{base}.partial-{owner}{os.path.splitext(base)[1]}')


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path`` (same extension) to write to; on success it is
    renamed to ``path``, on any error removed, leaving ``path`` as it was."""
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, write, mode='wb'):
    """``write(f)`` into a temporary file beside ``path``, then rename it to ``path``: a reader
    never sees a partial file, and a failure leaves nothing behind."""
    with atomic_output(path) as tmp:
        with open(tmp, mode, **({} if 'b' in mode else {'encoding': 'utf-8', 'newline': ''})) as f:
            write(f)


def save_weights(state, path):
    """Write a KDSR state dict as ``{'params_ema': state}`` (the inference format) atomically, after
    it re-loads strictly; returns its :class:`~kdsr_arch.checkpoint.KDSRSpec`. A failure leaves
    ``path`` as it was."""
    import torch

    from kdsr_arch.checkpoint import load_kdsr
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save({'params_ema': state}, tmp)
        return load_kdsr(tmp)[1]  # loads strictly, or says why not


def make_weights_file(tool, path, make):
    """The recipe scripts' common end: refuse an existing ``path`` (a user's file is never
    overwritten), build the state dict with ``make()`` (a bad input file is one line naming it,
    then exit) and :func:`save_weights` it; returns the spec."""
    if os.path.exists(path):
        sys.exit(f'{path}: exists; remove it or choose another output path.')
    try:
        state = make()
    except (OSError, ValueError, KeyError) as err:
        sys.exit(f'{tool}: error: {first_line(err)}')
    return save_weights(state, path)


def encode_image(path, img):
    """The bytes of ``img`` in the format of ``path``'s extension (16-bit and alpha dropped
    where the format has neither). A two-channel ``img`` is gray + alpha: a PNG of colour type
    4 (:func:`encode_png_gray_alpha`), in other formats gray, gray, gray, alpha."""
    ext = os.path.splitext(path)[1].lower()
    if img.ndim == 3 and img.shape[2] == 2:
        if ext == '.png':
            return encode_png_gray_alpha(img)
        img = np.dstack([cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR), img[:, :, 1]])
    if img.dtype == np.uint16 and ext[1:] not in EXTS_16BIT:
        img = (img / 257.0).round().astype(np.uint8)
    if ext in ('.jpg', '.jpeg', '.bmp') and img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ValueError(f'could not encode as {ext}')
    return buf.tobytes()


def gray_alpha(bgra):
    """The ``(h, w, 2)`` gray + alpha image of a BGRA one: gray as OpenCV's BGR2GRAY
    (0.299 R + 0.587 G + 0.114 B, rounded), alpha as it is; 8 or 16 bits as the input."""
    return np.dstack([cv2.cvtColor(np.ascontiguousarray(bgra[:, :, :3]), cv2.COLOR_BGR2GRAY), bgra[:, :, 3]])


def _png_chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)


def encode_png_gray_alpha(img):
    """The PNG file of an ``(h, w, 2)`` gray + alpha image: colour type 4, bit depth 8 or 16 by
    the dtype (samples big-endian), every row with filter type 2 ('up': the difference from the
    row above, which compresses photos better than none), zlib level 6. OpenCV writes only
    1, 3 or 4 channels, and Pillow no 16-bit gray + alpha."""
    if img.ndim != 3 or img.shape[2] != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'gray + alpha PNG: need an (h, w, 2) uint8 or uint16 array, got {img.shape} {img.dtype}')
    h, w = img.shape[:2]
    depth = 16 if img.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(img, dtype='>u2' if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # modulo 256, as the PNG filter wants
    raw = np.hstack([np.full((h, 1), 2, np.uint8), up])
    ihdr = struct.pack('>IIBBBBB', w, h, depth, PNG_GRAY_ALPHA, 0, 0, 0)
    return (PNG_SIGNATURE + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)) +
            _png_chunk(b'IEND', b''))


def write_image_atomic(path, img):
    """Encode ``img`` by ``path``'s extension and write it atomically."""
    data = encode_image(path, img)
    write_atomic(path, lambda f: f.write(data))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _partial_owner(name):
    """``(pid, host tag)`` of a temporary file's name (:func:`partial_path`; the tag is '' in
    names without one, which this host made), or None when ``name`` is not one."""
    if not (name.startswith('.') and '.partial-' in name):
        return None
    pid, _, tag = name.rsplit('.partial-', 1)[1].split('.', 1)[0].partition('-')
    return (int(pid), tag) if pid.isdigit() else None


def remove_stale_partials(folder):
    """Delete temporary files that a killed earlier run left in ``folder``: this host's whose
    process is gone, another host's (a shared folder) when untouched for :data:`CLAIM_STALE_S`."""
    for name in os.listdir(folder):
        owner = _partial_owner(name)
        if owner is None:
            continue
        path = os.path.join(folder, name)
        try:
            if owner[1] in ('', HOST_TAG):
                stale = not _alive(owner[0])
            else:
                stale = time.time() - os.path.getmtime(path) > CLAIM_STALE_S
            if stale:
                os.remove(path)
        except FileNotFoundError:  # its owner renamed or removed it meanwhile
            pass
