"""The demo head shipped with the extension, and its entry in Slicer's Sample Data module.

MoEMRILib, the core (moemri) and Resources/ sit side by side both in the source tree and in the
installed qt-scripted-modules folder (MoEMRILib/CMakeLists.txt installs them so), so one relative
path finds the sample and the model weights in either layout. The weights' sha256 is checked by
the core when it loads them.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "Resources"
SAMPLE_FILE_NAME = "MNI152-2009a-T1.nii.gz"
SAMPLE_NODE_NAME = "MNI152-2009a-T1"
SAMPLE_NAME = "MNI152 2009a T1 head"
SAMPLE_CATEGORY = "MoE-MRI"
SAMPLE_DATA_ID = "mni152-2009"  # its entry in moemri.data.sources, which holds the checksum

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


def sample_checksum() -> str:
    """'SHA256:<hex>', as Sample Data checks a file it copies into its cache."""
    from moemri.data.sources import source_by_id

    return f"SHA256:{source_by_id(SAMPLE_DATA_ID).sha256}"


def sample_data_source(thumbnail: str | None = None) -> dict:
    """The keyword arguments of `SampleDataLogic.registerCustomSampleDataSource` for the head.

    A file URI: Sample Data "downloads" it into its cache like any other source (urllib reads
    file: URIs) and checks the checksum, so a damaged install is noticed. `loadFileType` (not
    the newer `loadFileTypes`) is accepted by every Slicer 5 release.
    """
    return dict(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=sample_volume_path().as_uri(),
        fileNames=SAMPLE_FILE_NAME,
        nodeNames=SAMPLE_NODE_NAME,
        thumbnailFileName=thumbnail,
        loadFileType="VolumeFile",
        checksums=sample_checksum(),
    )


def register_sample_data(thumbnail: str | None = None) -> bool:
    """Add the sample head to Slicer's Sample Data module (once, whichever module calls first).

    Needs the Slicer application (the SampleData module); call it on `startupCompleted`.
    Returns whether the head is registered.
    """
    global _registered
    if _registered:
        return True
    try:
        import SampleData

        source = sample_data_source(thumbnail)
    except (ImportError, FileNotFoundError) as error:
        log.warning("MoE-MRI sample data not registered: %s", error)
        return False
    SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)
    _registered = True
    return True
