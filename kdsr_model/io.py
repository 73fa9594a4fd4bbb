"""Image files as every tool meets them: listing, reading (bit depth, alpha, EXIF), atomic writes.

Nothing here prints; errors are ``ValueError``/``OSError`` with a short reason, which the
tools turn into one line naming the file.
"""
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import OptionError

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp')
MAX_PIXELS = 1 << 27  # 134 M pixels: larger headers are refused unless the caller raises the limit
ALPHA_MODES = ('RGBA', 'LA', 'La', 'RGBa', 'PA')
EXTS_16BIT = ('png', 'tif', 'tiff')
EXIF_EXTS = ('.jpg', '.jpeg', '.tif', '.tiff', '.webp')


def first_line(err):
    """An exception's message, first line only (its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


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
    """The temporary name beside ``path`` that an atomic write uses (hidden, with our PID)."""
    base = os.path.basename(path)
    return os.path.join(os.path.dirname(path) or '.', f'.{base}.partial-{os.getpid()}{os.path.splitext(base)[1]}')


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


def encode_image(path, img):
    """The bytes of ``img`` in the format of ``path``'s extension (16-bit and alpha dropped
    where the format has neither)."""
    ext = os.path.splitext(path)[1].lower()
    if img.dtype == np.uint16 and ext[1:] not in EXTS_16BIT:
        img = (img / 257.0).round().astype(np.uint8)
    if ext in ('.jpg', '.jpeg', '.bmp') and img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ValueError(f'could not encode as {ext}')
    return buf.tobytes()


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


def remove_stale_partials(folder):
    """Delete temporary files that a killed earlier run left in ``folder`` (their process is gone)."""
    for name in os.listdir(folder):
        if not (name.startswith('.') and '.partial-' in name):
            continue
        pid = name.rsplit('.partial-', 1)[1].split('.', 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            os.remove(os.path.join(folder, name))
