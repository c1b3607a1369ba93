"""Registry writes and look-ups: register a version, move an alias (production through an
approved request), resolve a reference, verify weights before the worker loads them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.errors import InvalidTransition, SelfApprovalForbidden
from governance.registry.models import (
    MODEL_CARD_FIELDS,
    PROTECTED_ALIASES,
    WEIGHT_FILENAMES,
    AliasMove,
    AliasMoveRequest,
    AliasMoveRequestStatus,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    WeightFile,
    WeightRole,
)
from governance.roles import Role, role_require

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


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


def local_path_for(uri: str, *, refresh: bool = False) -> Path:
    """Return a readable local path for a weight URI, fetching ``s3://`` objects into a cache.

    ``refresh`` fetches the object again even when a cached copy exists (registration hashes
    the bytes in the store now, never a copy from an earlier fetch).
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme == "s3":
        return _fetch_s3(parts.netloc, parts.path.lstrip("/"), refresh=refresh)
    if parts.scheme:
        raise WeightsUnavailable(f"unsupported weight URI scheme {parts.scheme!r} in {uri!r}")
    path = Path(uri)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def _fetch_s3(bucket: str, key: str, *, refresh: bool = False) -> Path:
    from generation.storage import S3Store, StorageError

    if not bucket or not key or key.endswith("/"):
        raise WeightsUnavailable(f"s3://{bucket}/{key} does not name an object")
    target = Path(settings.GENERATION_MODEL_CACHE_DIR) / "s3" / bucket / key
    if target.exists() and not refresh:
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


def _sibling_uri(uri: str, filename: str) -> str:
    """The URI of ``filename`` in the same folder (or S3 prefix) as ``uri``."""
    parts = urlsplit(uri)
    if parts.scheme in ("s3", "file"):
        folder = parts.path.rsplit("/", 1)[0]
        return f"{parts.scheme}://{parts.netloc}{folder}/{filename}"
    return str(Path(uri).parent / filename)


def _read_sidecar(sources: list[WeightSource], filename: str) -> dict[str, Any] | None:
    """Read a JSON file stored beside the first weight file; None when there is none."""
    uri = _sibling_uri(sources[0].uri, filename)
    try:
        text = local_path_for(uri, refresh=True).read_text()
    except (FileNotFoundError, WeightsUnavailable):
        return None
    except OSError as exc:
        raise RegistryError(f"cannot read {uri}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{uri} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{uri} must hold a JSON object")
    return data


def _validate_engine_config(config: dict[str, Any]) -> dict[str, Any]:
    # The engine's config module is torch-free; it refuses unknown keys and names them.
    from generation.engine.config import VarClipConfig

    try:
        return VarClipConfig.from_dict(config).to_dict()
    except (TypeError, ValueError, KeyError) as exc:
        raise RegistryError(f"invalid engine config: {exc}") from None


def model_card_validate(card: dict[str, Any]) -> dict[str, Any]:
    """Return the card if every key is known and every value has the right type."""
    if not isinstance(card, dict):
        raise RegistryError("the model card must be a JSON object")
    unknown = sorted(set(card) - set(MODEL_CARD_FIELDS))
    if unknown:
        raise RegistryError(
            f"unknown model card keys: {', '.join(unknown)} (known: {', '.join(MODEL_CARD_FIELDS)})"
        )
    for key, value in card.items():
        if key == "typical_caption_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 75:
                raise RegistryError(
                    "model card typical_caption_tokens must be a whole number from 1 to 75"
                )
        elif key == "evaluation_results":
            if not isinstance(value, str | dict | list):
                raise RegistryError(
                    "model card evaluation_results must be text, an object or a list"
                )
        elif not isinstance(value, str) or not value.strip():
            raise RegistryError(f"model card {key} must be non-empty text")
    return card


def sources_from_location(location: str) -> list[WeightSource]:
    """Return the three weight files of a local checkpoint directory or an ``s3://`` prefix."""
    if location.startswith("s3://"):
        prefix = location.rstrip("/")
        return [
            WeightSource(role=role.value, uri=f"{prefix}/{filename}")
            for role, filename in WEIGHT_FILENAMES.items()
        ]
    return sources_from_directory(Path(location))


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
    expected_sha256: dict[str, str] | None = None,
) -> ModelVersion:
    """Hash the weight files and record a new immutable model version; nothing partial on error.

    Engine config and model card default to ``config.json`` and ``model_card.json`` beside the
    weights; ``expected_sha256`` (role to hex digest) refuses files whose bytes differ.
    A person registering must be a model administrator (``None`` is the system: demo setup).
    """
    # 1. check who asks and the inputs that need no file
    if registered_by is not None:
        role_require(registered_by, Role.MODEL_ADMIN, action="registering a model version")
    roles = sorted(source.role for source in sources)
    expected = sorted(role.value for role in WeightRole)
    if roles != expected:
        raise RegistryError(f"need exactly one weight file per role {expected}, got {roles}")
    for role, digest in (expected_sha256 or {}).items():
        if role not in expected:
            raise RegistryError(f"expected SHA-256 given for unknown role {role!r}")
        if not SHA256_HEX.fullmatch(digest):
            raise RegistryError(f"expected SHA-256 for {role} is not 64 lower-case hex digits")
    if not SLUG.fullmatch(model_name):
        raise RegistryError(f"model name {model_name!r} must be lower-case letters, digits, - or _")
    if version is not None and version < 1:
        raise RegistryError("version numbers start at 1")
    # 2. engine config and model card
    if engine_config is None:
        engine_config = _read_sidecar(sources, "config.json")
        if engine_config is None:
            raise RegistryError(
                f"no engine config given and no config.json beside {sources[0].uri}"
            )
    config = _validate_engine_config(engine_config)
    if model_card is None:
        model_card = _read_sidecar(sources, "model_card.json") or {}
    card = model_card_validate(model_card)
    # 3. hash every file as it is now
    hashed = []
    for source in sorted(sources, key=lambda s: s.role):
        try:
            path = local_path_for(source.uri, refresh=True)
            digest, size = file_sha256(path)
        except WeightsUnavailable as exc:
            raise RegistryError(f"cannot read {source.role} weights: {exc}") from None
        except OSError as exc:
            raise RegistryError(
                f"cannot read {source.role} weights at {source.uri}: {exc.strerror}"
            ) from None
        wanted = (expected_sha256 or {}).get(source.role)
        if wanted is not None and wanted != digest:
            raise RegistryError(
                f"hash mismatch for {source.role} weights at {source.uri}: "
                f"expected {wanted}, the file has {digest}"
            )
        hashed.append((source, digest, size))
    defaults = _validate_sampling(sampling_defaults or {}, int(config["vqvae"]["vocab_size"]))
    # 4. the rows, all or nothing
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
                    model_card=card,
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
        audit_append(
            actor=registered_by,
            action=AuditAction.REGISTRY_VERSION_REGISTERED,
            target_type="model_version",
            target_id=model_version.pk,
            payload={
                "model": model_name,
                "version": version,
                "weights": {source.role: digest for source, digest, _ in hashed},
                "uris": {source.role: source.uri for source, _, _ in hashed},
            },
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
    """Point an unprotected alias at a version and record who moved it, from where, and why.

    A protected alias (``production``) moves only through ``alias_move_request`` and
    ``alias_move_approve``; the one exception is the system (``moved_by=None``) placing it
    for the first time on a fresh installation, which is recorded like any other move.
    A person moving an alias must be a model administrator, whichever way they came (web,
    API or management command).
    """
    if moved_by is not None:
        role_require(moved_by, Role.MODEL_ADMIN, action="moving an alias")
    with transaction.atomic():
        target = _version(model_name, version)
        if alias in PROTECTED_ALIASES:
            exists = ModelAlias.objects.filter(model=target.model, name=alias).exists()
            if moved_by is not None or exists:
                raise RegistryError(
                    f"{model_name}@{alias} moves only through an approved request "
                    "(alias_move_request, then a model administrator approves it)"
                )
        return _alias_point(target=target, alias=alias, moved_by=moved_by, reason=reason)


def alias_move_request(
    *,
    model_name: str,
    alias: str,
    version: int,
    requested_by: AbstractBaseUser,
    reason: str,
) -> AliasMoveRequest:
    """Ask for a protected alias to move; a second model administrator approves or rejects it.
    Only model administrators ask, whichever way they came (web, API or management command)."""
    role_require(requested_by, Role.MODEL_ADMIN, action="requesting an alias move")
    if not reason.strip():
        raise RegistryError("an alias move needs a reason")
    if alias not in PROTECTED_ALIASES:
        raise RegistryError(f"{alias!r} is not protected: move it directly with alias_move")
    with transaction.atomic():
        target = _version(model_name, version)
        current = ModelAlias.objects.filter(model=target.model, name=alias).first()
        if current is not None and current.version_id == target.pk:
            raise RegistryError(f"{model_name}@{alias} already points at {target}")
        move_request = AliasMoveRequest.objects.create(
            model=target.model,
            alias_name=alias,
            from_version=current.version if current else None,
            to_version=target,
            reason=reason,
            requested_by=requested_by,
        )
        audit_append(
            actor=requested_by,
            action=AuditAction.REGISTRY_ALIAS_MOVE_REQUESTED,
            target_type="alias_move_request",
            target_id=move_request.pk,
            payload={
                "model": model_name,
                "alias": alias,
                "from": str(move_request.from_version) if move_request.from_version else None,
                "to": str(target),
                "reason": reason,
            },
        )
        return move_request


def alias_move_approve(
    *, move_request: AliasMoveRequest, approved_by: AbstractBaseUser
) -> AliasMove:
    """Approve a pending request and move the alias; the approver is a model administrator
    who neither registered the target version nor asked for the move."""
    with transaction.atomic():
        move_request = _lock_pending(move_request, "approved")
        role_require(approved_by, Role.MODEL_ADMIN, action="approving an alias move")
        target = move_request.to_version
        if target.registered_by_id is not None and target.registered_by_id == approved_by.pk:
            raise SelfApprovalForbidden(
                f"{approved_by} registered {target} and cannot approve moving "
                f"{move_request.alias_name} to it"
            )
        if move_request.requested_by_id == approved_by.pk:
            raise SelfApprovalForbidden(f"{approved_by} requested this move and cannot approve it")
        current = ModelAlias.objects.filter(
            model=move_request.model, name=move_request.alias_name
        ).first()
        if (current.version_id if current else None) != move_request.from_version_id:
            raise RegistryError(
                f"{move_request.model.name}@{move_request.alias_name} has moved since request "
                f"#{move_request.pk} was made; reject it and request again"
            )
        move_request.status = AliasMoveRequestStatus.APPROVED
        move_request.decided_by = approved_by
        move_request.decided_at = timezone.now()
        move_request.save(update_fields=["status", "decided_by", "decided_at"])
        alias = _alias_point(
            target=target,
            alias=move_request.alias_name,
            moved_by=approved_by,
            reason=move_request.reason,
            request=move_request,
        )
        return alias.moves.get(request=move_request)


def alias_move_reject(
    *, move_request: AliasMoveRequest, rejected_by: AbstractBaseUser, reason: str
) -> AliasMoveRequest:
    """Refuse a pending request; the alias stays where it is."""
    if not reason.strip():
        raise RegistryError("a rejection needs a reason")
    with transaction.atomic():
        move_request = _lock_pending(move_request, "rejected")
        role_require(rejected_by, Role.MODEL_ADMIN, action="rejecting an alias move")
        move_request.status = AliasMoveRequestStatus.REJECTED
        move_request.decided_by = rejected_by
        move_request.decided_at = timezone.now()
        move_request.decision_note = reason
        move_request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        audit_append(
            actor=rejected_by,
            action=AuditAction.REGISTRY_ALIAS_MOVE_REJECTED,
            target_type="alias_move_request",
            target_id=move_request.pk,
            payload={
                "model": move_request.model.name,
                "alias": move_request.alias_name,
                "to": str(move_request.to_version),
                "reason": reason,
            },
        )
        return move_request


def alias_history(*, model_name: str, alias: str) -> list[AliasMove]:
    """Every move of the alias, newest first, with requester and approver where approved."""
    return list(
        AliasMove.objects.filter(alias__model__name=model_name, alias__name=alias)
        .select_related(
            "from_version", "to_version", "moved_by", "request__requested_by", "alias__model"
        )
        .order_by("-moved_at", "-id")
    )


def _version(model_name: str, version: int) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("model").get(
            model__name=model_name, version=version
        )
    except ModelVersion.DoesNotExist:
        raise RegistryError(f"no model version {model_name}:{version}") from None


def _lock_pending(move_request: AliasMoveRequest, target: str) -> AliasMoveRequest:
    locked = (
        AliasMoveRequest.objects.select_for_update()
        .select_related("model", "to_version")
        .get(pk=move_request.pk)
    )
    if locked.status != AliasMoveRequestStatus.PENDING:
        raise InvalidTransition(f"alias move request #{locked.pk}", locked.status, target)
    return locked


def _alias_point(
    *,
    target: ModelVersion,
    alias: str,
    moved_by: AbstractBaseUser | None,
    reason: str,
    request: AliasMoveRequest | None = None,
) -> ModelAlias:
    if not reason.strip():
        raise RegistryError("an alias move needs a reason")
    if not SLUG.fullmatch(alias):
        raise RegistryError(f"alias {alias!r} must be lower-case letters, digits, - or _")
    existing = ModelAlias.objects.select_for_update().filter(model=target.model, name=alias).first()
    previous = existing.version if existing else None
    if previous is not None and previous.pk == target.pk:
        raise RegistryError(f"{target.model.name}@{alias} already points at {target}")
    if existing is None:
        existing = ModelAlias.objects.create(model=target.model, name=alias, version=target)
    else:
        existing.version = target
        existing.save(update_fields=["version", "updated_at"])
    move = AliasMove.objects.create(
        alias=existing,
        from_version=previous,
        to_version=target,
        moved_by=moved_by,
        reason=reason,
        request=request,
    )
    audit_append(
        actor=moved_by,
        action=AuditAction.REGISTRY_ALIAS_MOVED,
        target_type="model_alias",
        target_id=existing.pk,
        payload={
            "model": target.model.name,
            "alias": alias,
            "from": str(previous) if previous else None,
            "to": str(target),
            "reason": reason,
            "move": move.pk,
            "request": request.pk if request else None,
            "requested_by": request.requested_by.get_username() if request else None,
        },
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
            if digest != weight.sha256 and weight.uri.startswith("s3://"):
                # A damaged or stale cached copy is fetched once more before refusing.
                path = local_path_for(weight.uri, refresh=True)
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
