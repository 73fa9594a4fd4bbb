"""Image files as every tool meets them: listing, reading (bit depth, alpha, EXIF), atomic writes.

Nothing here prints; errors are ``ValueError``/``OSError`` with a short reason, which the
tools turn into one line naming the file.
"""
import os
from contextlib import contextmanager

import cv2
import numpy as np

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.bmp')
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


def read_image(path):
    """Read as OpenCV does, keeping bit depth, alpha and grayscale; EXIF orientation applied.
    Raises ValueError with a short reason for files that are not usable images."""
    if os.path.getsize(path) == 0:
        raise ValueError('empty file')
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError('not an image, truncated, or a format OpenCV cannot read')
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'unsupported pixel type {img.dtype} (8- or 16-bit images only)')
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise ValueError(f'unsupported channel count {img.shape[2]}')
    if path.lower().endswith(EXIF_EXTS):
        img = apply_orientation(img, exif_rotation(path))
    return img


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
