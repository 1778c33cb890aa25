"""The storage backends the behavioural suites run over, as the `backend` fixture (conftest.py) gives them.

- "sqlite": records in the data dir's SQLite file, videos in its folder (the default receiver).
- "postgres+s3": records in a fresh database of the session's throwaway PostgreSQL cluster
  (tests/pg_server.py), videos in a fresh bucket of the session's SeaweedFS (tests/s3_server.py).
  One combined variant, not four: each backend is exercised, and CI pays for one extra run.

A test takes its receiver's settings from `backend.settings(...)` (or passes `**backend.overrides`
to `receiver_settings`); `ReceiverProcess` hands a subprocess the same backend from those settings.
The AWS credentials are in the test process's environment (monkeypatched), where `open_s3` reads
them, in-process or in a child. Missing PostgreSQL or SeaweedFS locally: the variant skips with one
line; under CI=true it fails (the rule of the two server fixtures, reused as they are).

What a test checks about the stored content goes through `objects` and `partials`, the one place
that knows a video is a file in a folder on one backend and an object in a bucket on the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from s3_server import SeaweedS3

from openrouter_video.receiver.settings import Settings

BACKENDS = ("sqlite", "postgres+s3")
PARTIAL_SUFFIX = ".part"  # the local content store's download in progress


@dataclass
class Backend:
    name: str
    database_url: str | None = None
    s3: SeaweedS3 | None = None
    s3_env: dict[str, str] = field(default_factory=dict)
    _client: Any = field(default=None, repr=False)

    @property
    def content_url(self) -> str | None:
        return self.s3_env.get("RECEIVER_CONTENT_URL")

    @property
    def overrides(self) -> dict[str, Any]:
        """Settings fields selecting this backend (none: the SQLite file and the videos folder)."""
        values: dict[str, Any] = {}
        if self.database_url is not None:
            values["database_url"] = self.database_url
        if self.content_url is not None:
            values["content_url"] = self.content_url
        return values

    @property
    def env(self) -> dict[str, str]:
        """What a CLI command needs besides the process environment to open this backend's stores."""
        values: dict[str, str] = {}
        if self.database_url is not None:
            values["RECEIVER_DATABASE_URL"] = self.database_url
        if self.content_url is not None:
            values["RECEIVER_CONTENT_URL"] = self.content_url
        return values

    def settings(self, data_dir: str, sim: Any, **overrides: Any) -> Settings:
        from receiver_support import receiver_settings  # (receiver_support imports this module)

        return receiver_settings(data_dir, sim, **{**self.overrides, **overrides})

    # -- the content as stored ------------------------------------------------------------------

    def _s3_client(self) -> Any:
        """One client for the test: tests poll these listings, and a new client costs a lot more."""
        if self._client is None:
            assert self.s3 is not None
            self._client = self.s3.client()
        return self._client

    def _bucket_and_prefix(self) -> tuple[str, str]:
        assert self.content_url is not None
        bucket, _, prefix = self.content_url.removeprefix("s3://").partition("/")
        return bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def objects(self, settings: Settings) -> list[str]:
        """Every whole video stored, as `<job_id>/<index>.mp4`, sorted."""
        if self.s3 is None:
            return sorted(
                os.path.relpath(os.path.join(folder, name), settings.videos_dir)
                for folder, _dirs, names in os.walk(settings.videos_dir)
                for name in names
                if not name.endswith(PARTIAL_SUFFIX)
            )
        bucket, prefix = self._bucket_and_prefix()
        found: list[str] = []
        for page in self._s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [item["Key"].removeprefix(prefix) for item in page.get("Contents") or []]
        return sorted(found)

    def partials(self, settings: Settings) -> list[str]:
        """Every download in progress or abandoned, as the `<job_id>/<index>.mp4` it would become:
        a `.part` file, or a multipart upload not completed."""
        if self.s3 is None:
            return sorted(
                os.path.relpath(os.path.join(folder, name), settings.videos_dir).removesuffix(PARTIAL_SUFFIX)
                for folder, _dirs, names in os.walk(settings.videos_dir)
                for name in names
                if name.endswith(PARTIAL_SUFFIX)
            )
        bucket, prefix = self._bucket_and_prefix()
        found: list[str] = []
        pages = (
            self._s3_client().get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            found += [item["Key"].removeprefix(prefix) for item in page.get("Uploads") or []]
        return sorted(found)
