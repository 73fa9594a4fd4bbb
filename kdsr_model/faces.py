"""Face enhancement for ``kdsr-upscale --face_enhance``: GFPGAN restores faces, KDSR the rest.

Nothing is downloaded. Two local sources of weights are needed:

* the GFPGAN model (``GFPGANv1.3.pth`` / ``GFPGANv1.4.pth``, 'clean' architecture):
  ``--face_model`` or ``$KDSR_GFPGAN_MODEL``;
* facexlib's face detector and parser, ``detection_Resnet50_Final.pth`` and
  ``parsing_parsenet.pth``, in one folder: ``--facexlib_dir`` or ``$KDSR_FACEXLIB_DIR``.

(GFPGAN itself would look for the facexlib files in ``gfpgan/weights`` under the current
directory and download them when missing; here they come from the folder given.)
"""
import os

from .compat import facexlib_weights_from

FACEXLIB_FILES = ('detection_Resnet50_Final.pth', 'parsing_parsenet.pth')


def resolve_face_weights(face_model=None, facexlib_dir=None):
    """Return ``(gfpgan_model_path, facexlib_dir)`` or raise FileNotFoundError naming the option."""
    face_model = face_model or os.environ.get('KDSR_GFPGAN_MODEL')
    facexlib_dir = facexlib_dir or os.environ.get('KDSR_FACEXLIB_DIR')
    if not face_model or not os.path.isfile(face_model):
        where = f' ({face_model} not found)' if face_model else ''
        raise FileNotFoundError(f'--face_model: a local GFPGAN weights file (GFPGANv1.4.pth) is needed{where}; '
                                'give --face_model or $KDSR_GFPGAN_MODEL.')
    missing = [f for f in FACEXLIB_FILES if not facexlib_dir or not os.path.isfile(os.path.join(facexlib_dir, f))]
    if missing:
        raise FileNotFoundError(f'--facexlib_dir: {" and ".join(missing)} not found in {facexlib_dir or "(not set)"}; '
                                'give the folder holding facexlib\'s weights with --facexlib_dir or '
                                '$KDSR_FACEXLIB_DIR.')
    return face_model, facexlib_dir


class FaceEnhancer:
    """GFPGAN with a :class:`~kdsr_model.upscaler.KDSRUpscaler` as background upsampler.

    Args:
        upscaler (KDSRUpscaler): Upscales everything but the faces.
        outscale (float): Final scale of the output.
        face_model (str | None): GFPGAN weights (else ``$KDSR_GFPGAN_MODEL``).
        facexlib_dir (str | None): Folder of facexlib's weights (else ``$KDSR_FACEXLIB_DIR``).
    """

    def __init__(self, upscaler, outscale, face_model=None, facexlib_dir=None):
        from gfpgan import GFPGANer
        face_model, facexlib_dir = resolve_face_weights(face_model, facexlib_dir)
        with facexlib_weights_from(facexlib_dir):
            self.gfpgan = GFPGANer(model_path=face_model, upscale=outscale, arch='clean', channel_multiplier=2,
                                   bg_upsampler=upscaler, device=upscaler.device)

    def enhance(self, img):
        """8-bit BGR image -> upscaled image with restored faces; also the number of faces found."""
        _, faces, output = self.gfpgan.enhance(img, has_aligned=False, only_center_face=False, paste_back=True)
        return output, len(faces)
