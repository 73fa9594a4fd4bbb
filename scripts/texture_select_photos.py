"""Build the texture selection photos: six camera photos from two Debian (bookworm) wallpaper packages,
used in neither training (`../shared/data/photos/train`) nor the held-out figures (`val/`,
`benchmarks/photos`). Half carry dense natural texture (grass, forest floor, leaves) that the
training photos lack; they choose among candidate models (scripts/interpolate_models.py) so that the
held-out photos stay held out. Prepared as benchmarks/photos: Lanczos (antialiased) to a long side of
768 px, centre-cropped to sides divisible by 12, 8-bit RGB PNG.

    python scripts/texture_select_photos.py datasets/photos_select_texture [--debs DIR]

Needs `apt-get download` (Debian or Ubuntu with bookworm-era packages), or the two .deb files in
--debs. Licences: see PHOTOS below (from /usr/share/doc/<package>/copyright and metadata.json).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from kdsr_model.io import atomic_output

# name -> (package, path inside the package, author, licence)
PHOTOS = {
    'aitzgorri_by_Aitzol_Berasategi': ('lomiri-wallpapers-16.04', 'usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg',
                                       'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'sunset_by_Aitzol_Berasategi': ('lomiri-wallpapers-16.04', 'usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg',
                                    'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'FallenLeaf': ('plasma-workspace-wallpapers', 'usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg',
                   'Risto Saukonpaa', 'GPL-2+'),
    'Path': ('plasma-workspace-wallpapers', 'usr/share/wallpapers/Path/contents/images/2560x1600.jpg',
             'Risto Saukonpaa', 'GPL-2+'),
    'DarkestHour': ('plasma-workspace-wallpapers', 'usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg',
                    'Risto Saukonpaa', 'GPL-2+'),
    'Kite': ('plasma-workspace-wallpapers', 'usr/share/wallpapers/Kite/contents/images/2560x1600.jpg',
             'Martin Klapetek', 'GPL-2+'),
}
LONG_SIDE = 768


def prepare(src, dst):
    """Lanczos to a long side of LONG_SIDE, centre crop to multiples of 12, PNG."""
    img = Image.open(src).convert('RGB')
    w, h = img.size
    s = LONG_SIDE / max(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.LANCZOS)
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    top, left = (h % 12) // 2, (w % 12) // 2
    arr = arr[top:top + h - h % 12, left:left + w - w % 12]
    with atomic_output(dst) as tmp:  # a partial PNG never stands as the photo
        Image.fromarray(arr).save(tmp, format='PNG')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('out', help='folder for the PNGs (made; existing files are left as they are)')
    ap.add_argument('--debs', help='folder holding the two .deb files (default: apt-get download into a temporary folder)')
    args = ap.parse_args()
    todo = {n: v for n, v in PHOTOS.items() if not os.path.exists(os.path.join(args.out, n + '.png'))}
    if not todo:
        print(f'{args.out}: all {len(PHOTOS)} photos present')
        return
    packages = sorted({v[0] for v in todo.values()})
    with tempfile.TemporaryDirectory() as work:
        debs = args.debs or work
        if not args.debs:
            r = subprocess.run(['apt-get', 'download', *packages], cwd=work, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f'texture_select_photos.py: error: apt-get download {" ".join(packages)} failed; download the .deb files '
                         f'by hand and give their folder with --debs')
        for pkg in packages:
            found = glob.glob(os.path.join(debs, f'{pkg}_*.deb'))
            if not found:
                sys.exit(f'texture_select_photos.py: error: no {pkg}_*.deb in {debs}; give the folder holding it with --debs')
            subprocess.run(['dpkg-deb', '-x', found[0], os.path.join(work, 'x')], check=True)
        os.makedirs(args.out, exist_ok=True)
        for name, (pkg, path, author, licence) in todo.items():
            prepare(os.path.join(work, 'x', path), os.path.join(args.out, name + '.png'))
            print(f'{args.out}/{name}.png  ({pkg}: /{path}; {author}; {licence})')


if __name__ == '__main__':
    main()
