"""Registry writes and look-ups: register a version, move an alias, resolve a reference."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from governance.registry.models import (
    WEIGHT_FILENAMES,
    AliasMove,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    WeightFile,
    WeightRole,
)


class RegistryError(Exception):
    """A registry operation was refused; the message says why."""


class WeightsUnavailable(RegistryError):
    """A weight file could not be read, or its bytes do not match the registered SHA-256."""


@dataclass(frozen=True)
class WeightSource:
    """One weight file as given at registration."""

    role: str
    uri: str


def file_sha256(path: Path) -> tuple[str, int]:
    """Return the hex SHA-256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def local_path_for(uri: str) -> Path:
    """Return a readable local path for a weight URI, fetching ``s3://`` objects into a cache."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme == "s3":
        return _fetch_s3(parts.netloc, parts.path.lstrip("/"))
    if parts.scheme:
        raise WeightsUnavailable(f"unsupported weight URI scheme {parts.scheme!r} in {uri!r}")
    path = Path(uri)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def _fetch_s3(bucket: str, key: str) -> Path:
    from generation.storage import S3Store, StorageError

    target = Path(settings.GENERATION_MODEL_CACHE_DIR) / "s3" / bucket / key
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = S3Store(bucket).get(key)
    except StorageError as exc:
        raise WeightsUnavailable(f"cannot fetch s3://{bucket}/{key}: {exc}") from exc
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def _read_config(sources: list[WeightSource], config: dict[str, Any] | None) -> dict[str, Any]:
    if config is not None:
        return config
    first = local_path_for(sources[0].uri)
    config_path = first.parent / "config.json"
    try:
        return json.loads(config_path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise RegistryError(
            f"no engine config given and no {config_path} beside the weights"
        ) from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{config_path} is not valid JSON: {exc}") from None


def _validate_engine_config(config: dict[str, Any]) -> dict[str, Any]:
    from generation.engine.config import VarClipConfig

    try:
        return VarClipConfig.from_dict(config).to_dict()
    except (TypeError, ValueError, KeyError) as exc:
        raise RegistryError(f"invalid engine config: {exc}") from None


def sources_from_directory(directory: Path) -> list[WeightSource]:
    """Return the three weight files of a checkpoint directory."""
    sources = []
    for role, filename in WEIGHT_FILENAMES.items():
        path = directory / filename
        if not path.is_file():
            raise RegistryError(f"{directory} has no {filename} ({role.label})")
        sources.append(WeightSource(role=role.value, uri=str(path)))
    return sources


def model_version_register(
    *,
    model_name: str,
    sources: list[WeightSource],
    registered_by: AbstractBaseUser | None,
    engine_config: dict[str, Any] | None = None,
    sampling_defaults: dict[str, Any] | None = None,
    model_card: dict[str, Any] | None = None,
    version: int | None = None,
) -> ModelVersion:
    """Hash the weight files and record a new immutable model version; nothing partial on error."""
    roles = sorted(source.role for source in sources)
    expected = sorted(role.value for role in WeightRole)
    if roles != expected:
        raise RegistryError(f"need exactly one weight file per role {expected}, got {roles}")
    config = _validate_engine_config(_read_config(sources, engine_config))
    hashed = []
    for source in sources:
        path = local_path_for(source.uri)
        try:
            digest, size = file_sha256(path)
        except OSError as exc:
            raise RegistryError(
                f"cannot read {source.role} weights at {source.uri}: {exc.strerror}"
            ) from None
        hashed.append((source, digest, size))
    defaults = _validate_sampling(sampling_defaults or {}, int(config["vqvae"]["vocab_size"]))
    with transaction.atomic():
        model, _ = RegisteredModel.objects.get_or_create(name=model_name)
        if version is None:
            last = model.versions.order_by("-version").values_list("version", flat=True).first()
            version = (last or 0) + 1
        try:
            with transaction.atomic():
                model_version = ModelVersion.objects.create(
                    model=model,
                    version=version,
                    engine_config=config,
                    sampling_defaults=defaults,
                    model_card=model_card or {},
                    registered_by=registered_by,
                )
        except IntegrityError:
            raise RegistryError(f"{model_name}:{version} is already registered") from None
        WeightFile.objects.bulk_create(
            WeightFile(
                model_version=model_version,
                role=source.role,
                uri=source.uri,
                sha256=digest,
                size_bytes=size,
            )
            for source, digest, size in hashed
        )
    return model_version


def _validate_sampling(values: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    from generation.sampling_settings import (
        DEFAULTS,
        SamplingSettingsError,
        validate_sampling_settings,
    )

    # The reference's top-k of 900 assumes a 4096-code book; a smaller book caps it.
    fitted = {"top_k": min(int(DEFAULTS["top_k"]), vocab_size)}
    try:
        checked = validate_sampling_settings(values, fitted)
    except SamplingSettingsError as exc:
        raise RegistryError(f"invalid sampling defaults: {exc}") from None
    if checked["top_k"] > vocab_size:
        raise RegistryError(
            f"sampling default top_k {checked['top_k']} exceeds codebook {vocab_size}"
        )
    return checked


def alias_move(
    *, model_name: str, alias: str, version: int, moved_by: AbstractBaseUser | None, reason: str
) -> ModelAlias:
    """Point an alias at a version and record who moved it, from where, and why."""
    if not reason.strip():
        raise RegistryError("an alias move needs a reason")
    with transaction.atomic():
        try:
            target = ModelVersion.objects.select_related("model").get(
                model__name=model_name, version=version
            )
        except ModelVersion.DoesNotExist:
            raise RegistryError(f"no model version {model_name}:{version}") from None
        existing = (
            ModelAlias.objects.select_for_update().filter(model=target.model, name=alias).first()
        )
        previous = existing.version if existing else None
        if existing is None:
            existing = ModelAlias.objects.create(model=target.model, name=alias, version=target)
        else:
            existing.version = target
            existing.save(update_fields=["version", "updated_at"])
        AliasMove.objects.create(
            alias=existing,
            from_version=previous,
            to_version=target,
            moved_by=moved_by,
            reason=reason,
        )
    return existing


def model_version_resolve(reference: str) -> ModelVersion:
    """Resolve ``name@alias``, ``name:version`` or a bare model name (its default alias)."""
    reference = reference.strip()
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return (
                ModelAlias.objects.select_related("version__model")
                .get(model__name=name, name=alias)
                .version
            )
        if ":" in reference:
            name, number = reference.split(":", 1)
            return ModelVersion.objects.select_related("model").get(
                model__name=name, version=int(number)
            )
        return (
            ModelAlias.objects.select_related("version__model")
            .get(model__name=reference, name=settings.GENERATION_DEFAULT_ALIAS)
            .version
        )
    except (ModelAlias.DoesNotExist, ModelVersion.DoesNotExist, ValueError):
        raise RegistryError(f"unknown model reference {reference!r}") from None


def weights_verify(model_version: ModelVersion) -> dict[str, Path]:
    """Return each role's local weight path after checking its bytes against the registry."""
    paths: dict[str, Path] = {}
    for weight in model_version.weights.all():
        try:
            path = local_path_for(weight.uri)
            digest, _ = file_sha256(path)
        except OSError as exc:
            raise WeightsUnavailable(
                f"{weight.role} weights of {model_version} are unreadable at {weight.uri}: "
                f"{exc.strerror or exc}"
            ) from None
        if digest != weight.sha256:
            raise WeightsUnavailable(
                f"{weight.role} weights of {model_version} fail their hash: expected "
                f"{weight.sha256}, found {digest}"
            )
        paths[weight.role] = path
    if len(paths) != len(WeightRole):
        raise WeightsUnavailable(f"{model_version} lacks weight files: has {sorted(paths)}")
    return paths
