"""Which collections a Milvus holds: a small registry collection, so every process on one URI finds them all.

Each collection's manifest lives in ``<indexes>/<name>/manifest.json`` (that folder also holds the app's
media and thumbnails), and, for a Milvus collection, in the Milvus it is stored in. An app replica or CLI
run whose indexes folder lacks a collection registered on its server writes the local manifest from the
registry ("adopts" it) and then opens it like any other: two replicas on one URI see the same collections.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from crossmodal_demo.index.milvus_conn import connect, disconnect, is_lite

REGISTRY = "cm__collections"  # never a collection prefix: those are cm_<name>_<hash>
MAX_MANIFEST = 65535  # Milvus VARCHAR limit (a manifest is ~1 KB)


def _row_id(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:13], 16)


def register(client: Any, uri: str, manifest: dict[str, Any]) -> None:
    """Record ``manifest`` (a Milvus collection's, with ``name``) in the registry of the Milvus ``client`` talks to."""
    from pymilvus import DataType  # lazy: heavy, optional

    if not client.has_collection(REGISTRY):
        s = client.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("name", DataType.VARCHAR, max_length=256)
        s.add_field("manifest", DataType.VARCHAR, max_length=MAX_MANIFEST)
        s.add_field("pad", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field in every collection
        ip = client.prepare_index_params()
        ip.add_index("pad", index_type="FLAT" if is_lite(uri) else "AUTOINDEX", metric_type="IP")
        try:
            client.create_collection(REGISTRY, schema=s, index_params=ip)
        except Exception:  # another process created it first
            if not client.has_collection(REGISTRY):
                raise
    text = json.dumps(manifest)
    if len(text) > MAX_MANIFEST:
        raise ValueError(f"manifest of {manifest['name']!r} is {len(text)} characters (Milvus keeps at most {MAX_MANIFEST})")
    client.upsert(REGISTRY, [{"id": _row_id(manifest["name"]), "name": manifest["name"], "manifest": text, "pad": [0.0, 0.0]}])
    client.flush(REGISTRY)


def registered(uri: str) -> dict[str, dict[str, Any]]:
    """Collection name → manifest, for every collection registered on the Milvus at ``uri`` (connects and closes)."""
    client = connect(uri)
    try:
        if not client.has_collection(REGISTRY):
            return {}
        client.load_collection(REGISTRY)
        rows = client.query(REGISTRY, filter="id >= 0", output_fields=["name", "manifest"], limit=16384)
    finally:
        disconnect(client, uri)
    return {str(r["name"]): json.loads(r["manifest"]) for r in rows}


__all__ = ["REGISTRY", "register", "registered"]
