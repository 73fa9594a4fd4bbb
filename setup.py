#!/usr/bin/env python
"""KDSR (ICLR 2023) as a BasicSR plugin."""
import os
import re

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = 'kdsr-basicsr.pth'  # runs _kdsr_autoload.install() at start-up: see _kdsr_autoload.py


class BuildPyWithPth(build_py):
    """Also place the start-up ``.pth`` file at the root of site-packages."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


try:  # PEP 660 editable installs (pip install -e .) do not go through build_py's outputs
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithPth(editable_wheel):
        """Also place the start-up ``.pth`` file at the root of the editable wheel."""

        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            self.copy_file(os.path.join(HERE, PTH), os.path.join(unpacked_wheel, PTH), preserve_mode=0)
            return result

    CMDCLASS = {'build_py': BuildPyWithPth, 'editable_wheel': EditableWheelWithPth}
except ImportError:  # setuptools < 64: editable installs use 'develop'
    CMDCLASS = {'build_py': BuildPyWithPth}


def read(name):
    with open(os.path.join(HERE, name), encoding='utf-8') as f:
        return f.read()


def version():
    """The one place the version is written: ``kdsr_arch/__init__.py``."""
    return re.search(r"^__version__ = '([^']+)'", read(os.path.join('kdsr_arch', '__init__.py')), re.M).group(1)


setup(
    name='kdsr',
    version=version(),
    description='KDSR (ICLR 2023): knowledge-distillation based degradation estimation for blind '
    'super-resolution, as a BasicSR plugin',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    packages=find_packages(include=['kdsr_arch', 'kdsr_arch.*', 'kdsr_model', 'kdsr_model.*']),
    py_modules=['_kdsr_autoload', '_kdsr_torchvision'],
    package_data={'kdsr_model': ['weights/*.pth']},
    cmdclass=CMDCLASS,
    install_requires=[
        'basicsr>=1.4.2',
        'torch>=2.4',  # torch.serialization.add_safe_globals (weights_only resume)
        'torchvision',
        'numpy',
        'opencv-python',
        'pyyaml',
        'lmdb',
        'tqdm',
        'facexlib',
        'gfpgan',
    ],
    extras_require={
        'spandrel': ['spandrel'],
        'idr': ['scikit-learn', 'matplotlib'],
        'lpips': ['lpips'],
        'export': ['onnx', 'onnxruntime'],
        'safetensors': ['safetensors'],  # .safetensors weights (load_kdsr, kdsr-export --format safetensors)
        'video': ['av'],  # videos and animated GIFs (kdsr_model.video): PyAV, FFmpeg bundled in its wheels
        'test': ['pytest', 'setuptools>=64', 'wheel', 'realesrgan', 'spandrel', 'scikit-learn', 'matplotlib', 'lpips',
                 'onnx', 'onnxruntime', 'safetensors', 'av'],
    },
    entry_points={
        'console_scripts': [
            'kdsr-train=kdsr_model.train:main',
            'kdsr-test=kdsr_model.test:main',
            'kdsr-prepare=kdsr_model.prepare_data:main',
            'kdsr-degrade=kdsr_model.degrade:main',
            'kdsr-upscale=kdsr_model.upscale_cli:main',
            'kdsr-testset=kdsr_model.testset:main',
            'kdsr-eval=kdsr_model.evaluate:main',
            'kdsr-idr=kdsr_model.idr:main',
            'kdsr-export=kdsr_model.export:main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
