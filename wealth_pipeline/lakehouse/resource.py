"""Dagster resource handing assets a ``Lakehouse`` on a local folder or an S3 (compatible) bucket."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from wealth_pipeline.lakehouse.store import Lakehouse


class LakehouseResource(dg.ConfigurableResource):
    """The lakehouse root (``WEALTH_LAKEHOUSE_URI``) and, for ``s3://`` roots, the S3 endpoint.

    ``get()`` builds the ``Lakehouse`` once per resource instance and reuses it (its S3 client is
    thread-safe), so assets can call it freely.
    """

    uri: str = Field(description="Lakehouse root: a local folder, file:// URI, or s3://bucket/prefix.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint override for S3-compatible stores (MinIO, moto). Default: AWS.",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region.")

    _lakehouse: Lakehouse | None = PrivateAttr(default=None)

    def get(self) -> Lakehouse:
        """The configured ``Lakehouse``."""
        if self._lakehouse is None:
            self._lakehouse = Lakehouse.from_uri(self.uri, self.s3_endpoint_url, self.s3_region)
        return self._lakehouse
