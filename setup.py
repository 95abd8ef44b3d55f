"""Package metadata for tinysam-annotate."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

EXTRAS = {
    "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
    "gpu": ["onnx>=1.15", "onnxruntime-gpu>=1.17"],
    "app": ["gradio>=4.0"],
    # The plugin needs napari with a Qt binding to show; tests run it under Xvfb (pytest-xvfb).
    "napari": ["napari[pyqt6]>=0.5", "magicgui>=0.8", "npe2>=0.7", "pytest-qt>=4.2", "pytest-xvfb>=3.0"],
    "recipes": ["pyyaml>=6.0", "matplotlib>=3.7"],
    "distributed": ["ray[data]>=2.9"],
    "dev": ["pytest>=7.4", "hypothesis>=6.90", "pytest-timeout>=2.2", "playwright>=1.40"],
}

setup(
    name="tinysam-annotate",
    version="0.1.0",
    description="Interactive segmentation annotation on TinySAM: cached embeddings, SamPredictor API, COCO export",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The napari plugin lives in napari_plugin/ and installs under the unique import name tinysam_napari.
    packages=find_packages(include=["tinysam_annotate", "tinysam_annotate.*"]) + ["tinysam_napari"],
    package_dir={"tinysam_napari": "napari_plugin"},
    include_package_data=True,
    package_data={"tinysam_annotate": ["py.typed"], "tinysam_napari": ["napari.yaml"]},
    install_requires=[
        # torch is pinned (CPU build) by the Makefile before this package installs; any 2.x >= 2.1 works.
        "torch>=2.1",
        "numpy>=1.24",
        "pillow>=10.0",
        "tifffile>=2023.1",
        "scikit-image>=0.21",
        "pycocotools>=2.0.7",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["tinysam-annotate=tinysam_annotate.cli:main"],
        "napari.manifest": ["tinysam-annotate = tinysam_napari:napari.yaml"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
        "Framework :: napari",
    ],
)
