"""Connections to Milvus: which URIs mean Milvus Lite, and Lite servers released when their last user closes.

pymilvus runs Milvus Lite (a local ``*.db`` path) as a server inside this process and keeps it, and the
file's lock, until the process exits. Closing the last collection on a Lite file here releases it, so
another process (a CLI run after the app, a benchmark probe) can open the file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from crossmodal_demo.errors import UserError

_lite_users: dict[str, int] = {}  # Lite file → open collections in this process
_lite_lock = threading.Lock()


def is_lite(uri: str) -> bool:
    """True when ``uri`` is a local file path (Milvus Lite), False for a server URI (http(s)://, tcp://, unix:)."""
    return "://" not in uri and not uri.startswith("unix:")


def resolve_uri(uri: str, root: Path) -> str:
    """The URI to store: '' → Milvus Lite file ``<root>/milvus.db``; a relative Lite path → absolute."""
    if not uri:
        return str(Path(root).resolve() / "milvus.db")
    if is_lite(uri):
        path = Path(uri).expanduser().resolve()
        if path.suffix != ".db":
            raise UserError(f"Milvus Lite URI {uri!r} must be a file path ending in .db (e.g. indexes/shared.db), "
                            "or a server URI such as http://127.0.0.1:19530 (--milvus-uri / CROSSMODAL_MILVUS_URI).")
        return str(path)
    return uri


def connect(uri: str) -> Any:
    """A ``MilvusClient`` for ``uri``; a Lite file already open in another process fails with the fix."""
    from pymilvus import MilvusClient  # lazy: heavy, optional (requirements-scale.txt)

    # Milvus Lite lacks AllocTimestamp: pymilvus's iterator warns and falls back to client time (harmless),
    # and the in-process Lite server logs the unimplemented call; neither is the user's concern.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    if is_lite(uri):
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        client = MilvusClient(uri=uri)
    except Exception as exc:
        hint = (f"A Milvus Lite file serves one process at a time; to share it, run "
                f"`milvus-lite server --data-dir {uri} --port 19530` and use --milvus-uri http://127.0.0.1:19530."
                if is_lite(uri) else "Check that the Milvus server is running and reachable.")
        raise UserError(f"Cannot open Milvus at {uri!r} ({exc}). {hint}") from None
    if is_lite(uri):
        with _lite_lock:
            _lite_users[uri] = _lite_users.get(uri, 0) + 1
    return client


def disconnect(client: Any, uri: str) -> None:
    """Close ``client``; the last one on a Lite file also stops this process's Lite server (freeing the file)."""
    client.close()
    if not is_lite(uri):
        return
    with _lite_lock:
        _lite_users[uri] = _lite_users.get(uri, 1) - 1
        last = _lite_users[uri] <= 0
        if last:
            del _lite_users[uri]
    if last:
        from milvus_lite.server_manager import server_manager_instance  # lazy: optional package

        server_manager_instance.release_server(uri)


__all__ = ["connect", "disconnect", "is_lite", "resolve_uri"]
