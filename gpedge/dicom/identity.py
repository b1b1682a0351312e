"""Who made a DICOM result: the model's name, version and package checksum, the device attributes."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from gpedge._version import __version__
from gpedge.errors import GpedgeError
from gpedge.package import MANIFEST, sha256_file

MANUFACTURER = "gpedge"
#: Private coding scheme of the model's class names in the SR (code value = class name).
CLASS_SCHEME = "99GPEDGE"


def require_highdicom() -> ModuleType:
    """Import highdicom, or say which extra installs it."""
    try:
        import highdicom
    except ImportError as exc:
        raise GpedgeError(
            "writing DICOM objects needs highdicom, which is not installed; install the extra: pip install 'gpedge[dicom]'"
        ) from exc
    return highdicom


@dataclass(frozen=True)
class ModelIdentity:
    """The model behind a result, as written into SEG, Parametric Map and SR."""

    name: str
    version: str
    package_sha256: str
    backend: str
    offset: float
    mask_rule: str = "paper"

    @classmethod
    def of(cls, predictor) -> "ModelIdentity":
        """Identity of a :class:`~gpedge.runtime.predictor.Predictor`'s package and settings.

        ``package_sha256`` is the sha256 of the package's ``manifest.json``, which records the
        sha256 of every model file: it changes whenever any file of the package does.
        """
        package = predictor.package
        manifest = package.manifest
        arch = manifest["model"].get("arch", "model")
        return cls(
            name=f"{arch} ({package.root.name})"[:64],
            version=f"gpedge {manifest.get('gpedge_version', '?')} {manifest.get('created', '')}".strip()[:64],
            package_sha256=sha256_file(package.root / MANIFEST),
            backend=predictor.backend_name,
            offset=float(predictor.offset),
            mask_rule=predictor.mask_rule,
        )

    @property
    def parameters(self) -> dict[str, str]:
        return {"package_sha256": self.package_sha256, "backend": self.backend, "mask_rule": self.mask_rule,
                "mask_offset": f"{self.offset:g}"}

    @property
    def device(self) -> dict[str, str]:
        """Equipment attributes highdicom asks of every derived object."""
        return {
            "manufacturer": MANUFACTURER,
            "manufacturer_model_name": self.name,
            "software_versions": f"gpedge {__version__}",
            "device_serial_number": self.package_sha256[:16],
        }

    def algorithm_sequence(self):
        """highdicom AlgorithmIdentificationSequence (family: artificial intelligence)."""
        from pydicom.sr.codedict import codes

        hd = require_highdicom()
        return hd.AlgorithmIdentificationSequence(
            name=self.name, family=codes.DCM.ArtificialIntelligence,
            version=self.version, source=MANUFACTURER, parameters=self.parameters,
        )
