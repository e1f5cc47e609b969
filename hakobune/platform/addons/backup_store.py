"""Where backups are kept: the data directory (`local`, BACKUP_DIR) or an
S3-compatible bucket (`s3`, settings.BACKUP_S3), chosen by BACKUP_STORAGE
when a backup is made and recorded on it, so that a later change of the
setting still finds the older ones.

A store puts a file, gets it back, and deletes it; every error is a
StoreError whose message says, in a sentence, what went wrong. An upload is
only taken as done when the bucket says it holds an object of the file's
size (an error answered by the server, a wrong bucket or wrong keys fail it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings

from hakobune.platform.crypto import decrypt

LOCAL, S3 = "local", "s3"


class StoreError(Exception):
    """A file could not be stored, read or deleted; the message says why."""


def key_of(team: str, addon: str, backup_id: int, extension: str) -> str:
    return f"{team}/{addon}/{backup_id}.{extension}"


class LocalStore:
    """Files under BACKUP_DIR, readable by the platform's user only."""

    name = LOCAL
    bucket = ""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or settings.BACKUP_DIR)

    def describe(self) -> str:
        return "the data directory"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"{key!r} is not a name of a backup")
        return path

    def put(self, source: Path, key: str) -> None:
        path = self._path(key)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            shutil.copyfile(source, partial)
            os.chmod(partial, 0o600)
            os.replace(partial, path)
        except OSError as exc:
            raise StoreError(f"The backup could not be written to the data directory: {exc.strerror or exc}.")
        if path.stat().st_size != source.stat().st_size:
            raise StoreError("The backup written to the data directory is not the size of the dump.")

    def get(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise StoreError("The backup's file is no longer in the data directory.")
        except OSError as exc:
            raise StoreError(f"The backup's file could not be read: {exc.strerror or exc}.")

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"The backup's file could not be deleted: {exc.strerror or exc}.")


class S3Store:
    """Objects in a bucket of an S3-compatible server, through boto3;
    encrypted by the server (SSE-S3) as they are written."""

    name = S3

    def __init__(self, options: dict | None = None, bucket: str | None = None):
        self.options = dict(options or settings.BACKUP_S3)
        self.bucket = bucket or self.options.get("bucket") or ""

    def describe(self) -> str:
        return f"the bucket {self.bucket}"

    def _secret(self) -> str:
        secret = self.options.get("secret_access_key") or ""
        if secret.startswith("fernet:"):
            try:
                return decrypt(secret)
            except ValueError as exc:
                raise StoreError(f"BACKUP_S3_SECRET_ACCESS_KEY cannot be read: {exc}.")
        return secret

    def _client(self):
        import boto3
        from botocore.config import Config

        if not self.bucket:
            raise StoreError("No bucket is set for backups (BACKUP_S3_BUCKET); an administrator sets one.")
        return boto3.client(
            "s3",
            endpoint_url=self.options.get("endpoint_url") or None,
            region_name=self.options.get("region") or "us-east-1",
            aws_access_key_id=self.options.get("access_key_id") or None,
            aws_secret_access_key=self._secret() or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                          s3={"addressing_style": "path"}),
        )

    def _key(self, key: str) -> str:
        return f"{self.options.get('prefix') or ''}{key}"

    def _said(self, doing: str, exc: Exception) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = error.get("Code") or status
            if code == "NoSuchBucket":
                return StoreError(f"{doing} failed: the bucket {self.bucket} does not exist on the storage server.")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", 403, "403"):
                return StoreError(f"{doing} failed: the storage server refused the keys ({code}); "
                                  "an administrator checks BACKUP_S3_ACCESS_KEY_ID and its secret.")
            return StoreError(f"{doing} failed: the storage server answered {status or '?'} "
                              f"({error.get('Code') or 'an error'}: {error.get('Message') or 'no message'}).")
        return StoreError(f"{doing} failed: the storage server could not be reached ({exc}).")

    def put(self, source: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        try:
            client.upload_file(str(source), self.bucket, self._key(key),
                               ExtraArgs={"ServerSideEncryption": "AES256"},
                               Config=TransferConfig(multipart_threshold=64 * 1024 * 1024))
            head = client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._said(f"The upload to {self.describe()}", getattr(exc, "last_exception", None) or exc)
        except Exception as exc:  # noqa: BLE001 - boto3's transfer wraps errors in its own
            cause = exc.__cause__ or exc.__context__ or exc
            if isinstance(cause, (BotoCoreError, ClientError)):
                raise self._said(f"The upload to {self.describe()}", cause)
            raise StoreError(f"The upload to {self.describe()} failed: {exc}.")
        if head.get("ContentLength") != source.stat().st_size:
            raise StoreError(f"The upload to {self.describe()} was answered, but the bucket holds "
                             f"{head.get('ContentLength')} bytes of the {source.stat().st_size} sent.")

    def get(self, key: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().download_file(self.bucket, self._key(key), str(dest))
        except (BotoCoreError, ClientError) as exc:
            raise self._said(f"Reading the backup from {self.describe()}", exc)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"Reading the backup from {self.describe()} failed: {exc}.")

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._said(f"Deleting the backup from {self.describe()}", exc)


def configured() -> str:
    storage = settings.BACKUP_STORAGE
    if storage not in (LOCAL, S3):
        raise StoreError(f"BACKUP_STORAGE is {storage!r}; it is either {LOCAL!r} or {S3!r}.")
    return storage


def store_for(storage: str, bucket: str = ""):
    """The store a backup was (or is to be) kept in."""
    if storage == S3:
        return S3Store(bucket=bucket or None)
    return LocalStore()


def delete_files_of(addon) -> list[str]:
    """For an add-on being deleted: its backups' files, wherever they are."""
    done = []
    for backup in addon.backups.exclude(location=""):
        try:
            store_for(backup.storage, backup.bucket).delete(backup.location)
            done.append(f"deleted the backup {backup.id} of {addon.name}")
        except StoreError as exc:
            done.append(f"could not delete the backup {backup.id} of {addon.name}: {exc}")
    return done
