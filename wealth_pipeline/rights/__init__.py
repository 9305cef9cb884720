"""Data rights (issue 22): the provider rights registry, source lineage and licensed exports.

``registry``: ``providers.yaml`` validated at load, entitlements from ``WEALTH_ENTITLEMENTS``, the
export policy (``decide``). ``lineage``: which providers each published partition depends on
(``ops.lineage``) and which warehouse tables a mart is built from. ``export``: ``export_mart``,
behind ``wealth-pipeline export``.
"""
