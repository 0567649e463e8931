"""The demo head shipped with the extension, and its entry in Slicer's Sample Data module.

MoEMRILib and Resources/ sit side by side both in the source tree and in the installed
qt-scripted-modules folder (MoEMRILib/CMakeLists.txt installs them so), so one relative path finds
the file in either layout.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "Resources"
SAMPLE_FILE_NAME = "MNI152-2009a-T1.nii.gz"
SAMPLE_NODE_NAME = "MNI152-2009a-T1"
SAMPLE_CATEGORY = "MoE-MRI"

_registered = False


def sample_volume_path() -> Path:
    """Path of the shipped MNI152 2009a T1 head (1 mm, 197x233x189)."""
    path = RESOURCES_DIR / "SampleData" / SAMPLE_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the sample volume is missing: {path} (is the extension fully installed?)")
    return path


def weights_dir() -> Path:
    """Where the extension's bundled model weights are installed."""
    return RESOURCES_DIR / "Weights"


def register_sample_data(thumbnail: str | None = None) -> None:
    """Add the sample head to Slicer's Sample Data module (once, whichever module calls first).

    Needs the Slicer application (the SampleData module); call it on `startupCompleted`.
    """
    global _registered
    if _registered:
        return
    try:
        import SampleData

        path = sample_volume_path()
    except (ImportError, FileNotFoundError) as error:
        log.warning("MoE-MRI sample data not registered: %s", error)
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName="MNI152 2009a T1 head",
        thumbnailFileName=thumbnail,
        # A file URI: Sample Data "downloads" it into its cache like any other source.
        uris=path.as_uri(),
        fileNames=SAMPLE_FILE_NAME,
        nodeNames=SAMPLE_NODE_NAME,
        loadFileType="VolumeFile",
    )
    _registered = True
