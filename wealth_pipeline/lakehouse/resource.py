"""Dagster resource handing assets a ``Lakehouse`` on a local folder or an S3 (compatible) bucket."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from wealth_pipeline.lakehouse.store import Lakehouse
from wealth_pipeline.settings import ConfigurationError, validate_store_uri


class LakehouseResource(dg.ConfigurableResource):
    """The lakehouse root (``WEALTH_LAKEHOUSE_URI``) and, for ``s3://`` roots, the S3 endpoint.

    ``get()`` builds the ``Lakehouse`` once per resource instance and reuses it (its S3 client is
    thread-safe), so assets can call it freely. The root is checked when a run or sensor starts
    (a folder this process can write, or ``s3://bucket/prefix``): a bad one fails the run once,
    before any step, never retried.
    """

    uri: str = Field(description="Lakehouse root: a local folder, file:// URI, or s3://bucket/prefix (WEALTH_LAKEHOUSE_URI).")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint override for S3-compatible stores (MinIO, moto). Default: AWS (WEALTH_S3_ENDPOINT_URL).",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region (WEALTH_S3_REGION).")

    _lakehouse: Lakehouse | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        try:
            validate_store_uri("WEALTH_LAKEHOUSE_URI", self.uri, writable=True)
        except ConfigurationError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    def get(self) -> Lakehouse:
        """The configured ``Lakehouse``."""
        if self._lakehouse is None:
            self._lakehouse = Lakehouse.from_uri(self.uri, self.s3_endpoint_url, self.s3_region)
        return self._lakehouse
