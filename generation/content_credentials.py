"""C2PA Content Credentials on top of the signed record, when a certificate is configured.

The manifest says the image was created by a trained model (IPTC ``trainedAlgorithmicMedia``)
and carries the same provenance record. C2PA signs with an X.509 certificate chain and binds
the file bytes; our own record (generation/provenance.py) binds the pixels, so it also survives
re-encoding that strips the manifest. Uses c2pa-python (c2pa-rs) offline; torch-free.
"""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from generation.provenance import GENERATOR, TRAINED_ALGORITHMIC_MEDIA

RECORD_ASSERTION = "org.varclip.provenance"


def c2pa_enabled() -> bool:
    """Return whether a C2PA signing certificate and key are configured."""
    return bool(settings.PROVENANCE_C2PA_CERT and settings.PROVENANCE_C2PA_KEY)


@lru_cache(maxsize=2)
def _signer(cert_path: str, key_path: str) -> Any:
    import c2pa

    chain = Path(cert_path).read_bytes()
    key = Path(key_path).read_bytes()
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None)
    return c2pa.Signer.from_info(info)


def c2pa_sign(png: bytes, record: dict[str, Any]) -> bytes:
    """Return the PNG with an embedded C2PA manifest carrying ``record``."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": GENERATOR, "version": str(record.get("format", 1))}],
        "title": f"{record['output']}.png",
        "format": "image/png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": GENERATOR},
                        }
                    ]
                },
            },
            {"label": RECORD_ASSERTION, "data": record},
        ],
    }
    signer = _signer(str(settings.PROVENANCE_C2PA_CERT), str(settings.PROVENANCE_C2PA_KEY))
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/png", io.BytesIO(png), out)
    return out.getvalue()


@dataclass(frozen=True)
class C2paVerdict:
    """What the file's C2PA manifest says: absent, or its validation state and record."""

    present: bool
    state: str = ""  # "Trusted" (our CA), "Valid" (intact, signer unknown) or "Invalid"
    failures: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None
    ai_generated: bool = False

    def describe(self) -> str:
        if not self.present:
            return "none"
        if self.state == "Trusted":
            return "valid, signed by this platform's certificate"
        if self.state == "Valid":
            return "valid, but the signer is not one this platform trusts"
        return f"invalid ({', '.join(self.failures) or self.state})"


def c2pa_read(data: bytes) -> C2paVerdict:
    """Read and validate a C2PA manifest, trusting the configured chain's root certificate."""
    import c2pa

    context = None
    anchors = _trust_anchors()
    if anchors:
        context = c2pa.Context(
            c2pa.Settings.from_json(json.dumps({"trust": {"trust_anchors": anchors}}))
        )
    try:
        with c2pa.Reader("image/png", io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError:
        return C2paVerdict(present=False)
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = {item.get("label"): item.get("data") for item in active.get("assertions", [])}
    actions = json.dumps(assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {})
    untrusted = {"signingCredential.untrusted"}
    return C2paVerdict(
        present=True,
        state=str(store.get("validation_state", "")),
        failures=[
            str(item.get("code"))
            for item in store.get("validation_status") or []
            if item.get("code") not in untrusted
        ],
        record=assertions.get(RECORD_ASSERTION),
        ai_generated=TRAINED_ALGORITHMIC_MEDIA in actions,
    )


def _trust_anchors() -> str:
    if not settings.PROVENANCE_C2PA_CERT:
        return ""
    pems = Path(settings.PROVENANCE_C2PA_CERT).read_text().split("-----END CERTIFICATE-----")
    certificates = [pem.strip() + "\n-----END CERTIFICATE-----\n" for pem in pems if pem.strip()]
    return certificates[-1] if certificates else ""  # the chain's root: this platform's CA


def c2pa_certificate_create(directory: Path, *, days: int = 825) -> tuple[Path, Path]:
    """Write a private CA and an ES256 signing certificate for C2PA; return (chain, key) paths.

    Readers that do not know this CA report the manifest intact but its signer untrusted; a
    certificate from a CA on the C2PA trust list replaces it in production.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, GENERATOR),
            ]
        )

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=sign, crl_sign=sign,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name(f"{GENERATOR} provenance CA"))
        .issuer_name(name(f"{GENERATOR} provenance CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days * 2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(f"{GENERATOR} signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain_path, key_path = directory / "c2pa-chain.pem", directory / "c2pa-key.pem"
    chain_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return chain_path, key_path
