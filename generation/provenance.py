"""Provenance inside every stored PNG: a compact record signed with the server's Ed25519 key.

The signature covers the record and the SHA-256 of the decoded pixels, so a file can be
re-encoded or have its chunks reordered and still verify, while any pixel change or any edit
of the record breaks it. Torch-free: the web process verifies files too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

FORMAT = 1
RECORD_CHUNK = "varclip:provenance"
XMP_CHUNK = "XML:com.adobe.xmp"
ALGORITHM = "Ed25519"
GENERATOR = "varclip-platform"
# IPTC Digital Source Type for media made by a model trained on sampled content.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# Output ids are derived from job ids in this namespace (uuid5): one job, one output id.
OUTPUT_NAMESPACE = uuid.UUID("6f6b1f3e-8c1d-5d0e-9a57-0a7c2b1e4d21")

_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about=""'
    ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
    ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
    f' Iptc4xmpExt:DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"'
    f' xmp:CreatorTool="{GENERATOR}"'
    ' dc:identifier="urn:uuid:{output}"/>'
    "</rdf:RDF></x:xmpmeta>"
    '<?xpacket end="r"?>'
)


class ProvenanceError(ValueError):
    """A file could not be read as an image."""


def output_id_for(job_id: uuid.UUID | str) -> uuid.UUID:
    """Return the id the output of a job will have (known before the image is encoded)."""
    return uuid.uuid5(OUTPUT_NAMESPACE, str(job_id))


def pixels_sha256(image_HW3: Any) -> str:
    """Return the SHA-256 of RGB uint8 pixels, prefixed with their size so shapes differ."""
    import numpy as np

    pixels = np.ascontiguousarray(image_HW3, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ProvenanceError(f"expected an H x W x 3 image, got shape {pixels.shape}")
    header = f"rgb8:{pixels.shape[1]}x{pixels.shape[0]}:".encode()
    return hashlib.sha256(header + pixels.tobytes()).hexdigest()


def weights_digest(weights: dict[str, str]) -> str:
    """Return one SHA-256 over a version's weight hashes: ``role=sha256`` lines, sorted."""
    lines = "".join(f"{role}={digest}\n" for role, digest in sorted(weights.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- keys --------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _private_key(secret: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    # The Ed25519 seed is derived from the configured secret, so operators manage one string.
    seed = hmac.new(b"varclip provenance ed25519 v1", secret.encode(), hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes() -> bytes:
    """Return the raw 32-byte Ed25519 public key of the configured signing key."""
    from cryptography.hazmat.primitives import serialization

    key = _private_key(settings.PROVENANCE_SIGNING_KEY).public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[no-any-return]


def key_id() -> str:
    """Return the public key's fingerprint: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key_bytes()).hexdigest()[:16]


# --- signing -----------------------------------------------------------------------------


def provenance_record(
    *,
    output_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    request_id: uuid.UUID | str | None,
    template_version: str | None,
    model_version: str,
    weights_sha256: str,
    seed: int,
    sampling: dict[str, Any],
) -> dict[str, Any]:
    """Return the compact record signed into a file."""
    return {
        "format": FORMAT,
        "generator": GENERATOR,
        "digital_source_type": TRAINED_ALGORITHMIC_MEDIA,
        "output": str(output_id),
        "job": str(job_id),
        "request": str(request_id) if request_id else None,
        "template_version": template_version,
        "model_version": model_version,
        "weights_sha256": weights_sha256,
        "seed": int(seed),
        "sampling": sampling,
    }


def provenance_sign(record: dict[str, Any], pixels_digest: str) -> dict[str, Any]:
    """Return the signed envelope stored in the file's ``varclip:provenance`` chunk."""
    signed = {"record": record, "pixels_sha256": pixels_digest}
    signature = _private_key(settings.PROVENANCE_SIGNING_KEY).sign(_canonical(signed))
    return {
        **signed,
        "alg": ALGORITHM,
        "key_id": key_id(),
        "signature": base64.b64encode(signature).decode(),
    }


def png_with_provenance(image_HW3: Any, record: dict[str, Any]) -> tuple[bytes, str]:
    """Encode RGB uint8 pixels as PNG carrying the signed record and XMP; return (png, hash)."""
    from PIL import Image, PngImagePlugin

    digest = pixels_sha256(image_HW3)
    envelope = provenance_sign(record, digest)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECORD_CHUNK, json.dumps(envelope, sort_keys=True, separators=(",", ":")))
    info.add_itxt(XMP_CHUNK, _XMP.replace("{output}", str(record["output"])))
    buffer = io.BytesIO()
    Image.fromarray(image_HW3, mode="RGB").save(buffer, format="PNG", pnginfo=info)  # type: ignore[arg-type]
    return buffer.getvalue(), digest


# --- verifying ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProvenance:
    """What a file says about itself and whether its signature and pixels hold."""

    decodable: bool
    has_record: bool
    signature_valid: bool
    pixels_match: bool
    pixels_sha256: str | None
    record: dict[str, Any] | None
    ai_marker: bool  # the XMP carries IPTC trainedAlgorithmicMedia
    reason: str

    @property
    def output_id(self) -> str | None:
        return str(self.record.get("output")) if self.record else None


def provenance_read(data: bytes) -> FileProvenance:
    """Decode a file, check its signed record against this server's key and its pixels."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    # 1. decode; anything Pillow cannot read is not one of ours
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            chunks = dict(getattr(image, "text", {}) or {})
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return FileProvenance(False, False, False, False, None, None, False, f"not an image: {exc}")
    digest = pixels_sha256(pixels)
    ai_marker = TRAINED_ALGORITHMIC_MEDIA in chunks.get(XMP_CHUNK, "")
    # 2. read the envelope
    raw = chunks.get(RECORD_CHUNK)
    if raw is None:
        return FileProvenance(
            True, False, False, False, digest, None, ai_marker, "no provenance record in the file"
        )
    try:
        envelope = json.loads(raw)
        record = envelope["record"]
        signed_pixels = envelope["pixels_sha256"]
        signature = base64.b64decode(envelope["signature"], validate=True)
        if not isinstance(record, dict) or not isinstance(signed_pixels, str):
            raise TypeError("record must be an object and pixels_sha256 a string")
    except (ValueError, KeyError, TypeError) as exc:
        return FileProvenance(
            True, True, False, False, digest, None, ai_marker, f"malformed provenance record: {exc}"
        )
    # 3. the signature, then the pixels it vouches for
    if envelope.get("alg") != ALGORITHM or envelope.get("key_id") != key_id():
        return FileProvenance(
            True, True, False, False, digest, record, ai_marker,
            f"signed with another key ({envelope.get('alg')} {envelope.get('key_id')}), "
            f"not this server's ({ALGORITHM} {key_id()})",
        )  # fmt: skip
    from cryptography.exceptions import InvalidSignature

    try:
        _private_key(settings.PROVENANCE_SIGNING_KEY).public_key().verify(
            signature, _canonical({"record": record, "pixels_sha256": signed_pixels})
        )
    except InvalidSignature:
        return FileProvenance(
            True, True, False, False, digest, record, ai_marker,
            "the signature does not match the record: the record was altered or forged",
        )  # fmt: skip
    if signed_pixels != digest:
        return FileProvenance(
            True, True, True, False, digest, record, ai_marker,
            "the pixels differ from the signed pixel hash: the image was altered",
        )  # fmt: skip
    return FileProvenance(
        True, True, True, True, digest, record, ai_marker, "signature valid; pixels unchanged"
    )


@dataclass(frozen=True)
class ImageVerification:
    """The answer of ``verify_image``: origin, integrity, the output and its review status."""

    from_platform: bool
    unchanged: bool
    output_id: str | None
    review_status: str | None
    purged: bool
    byte_identical: bool  # the very bytes stored for the output
    file: FileProvenance
    content_credentials: Any  # generation.content_credentials.C2paVerdict
    detail: str


def image_verify(*, data: bytes) -> ImageVerification:
    """Say whether a file came from this platform, unchanged, and its output's review status.

    A file without its record (metadata stripped) is still recognised when its pixels
    match an output's pixel hash.
    """
    from generation.content_credentials import C2paVerdict, c2pa_read
    from generation.models import Output

    found = provenance_read(data)
    file_sha = hashlib.sha256(data).hexdigest()
    output = None
    detail = found.reason
    if found.signature_valid and found.output_id:
        output = Output.objects.filter(pk=found.output_id).first()
        if output is None:
            detail += "; no output with this id exists (any more) in the database"
    elif found.decodable and found.pixels_sha256 and not found.has_record:
        output = Output.objects.filter(pixels_sha256=found.pixels_sha256).first()
        if output is not None:
            detail = "no provenance record in the file, but its pixels match a stored output"
    from_platform = found.signature_valid or (output is not None and not found.has_record)
    unchanged = from_platform and (
        found.pixels_match or (output is not None and output.pixels_sha256 == found.pixels_sha256)
    )
    return ImageVerification(
        from_platform=from_platform,
        unchanged=unchanged,
        output_id=str(output.pk) if output else found.output_id if found.signature_valid else None,
        review_status=output.review_status if output else None,
        purged=bool(output and output.purged_at),
        byte_identical=bool(output and output.sha256 == file_sha),
        file=found,
        content_credentials=c2pa_read(data) if found.decodable else C2paVerdict(present=False),
        detail=detail,
    )
