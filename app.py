"""Run the app: ``python app.py`` serves http://127.0.0.1:7860 (see ``--help``; Hugging Face Spaces runs this file)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls unless asked (--share)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    """Flags win over CROSSMODAL_* environment variables, which win over the defaults."""
    env = os.environ.get
    spaces_data = Path("/data")  # Hugging Face Spaces persistent storage, when attached
    default_indexes = env("CROSSMODAL_INDEXES") or (str(spaces_data / "indexes") if spaces_data.is_dir() else "indexes")
    p = argparse.ArgumentParser(description="Cross-modal search app (Gradio).")
    p.add_argument("--host", default=env("CROSSMODAL_HOST"), help="interface to listen on (default 127.0.0.1; $CROSSMODAL_HOST)")
    p.add_argument("--port", type=int, default=int(env("CROSSMODAL_PORT") or 0) or None, help="port (default 7860; $CROSSMODAL_PORT)")
    p.add_argument("--share", action="store_true", default=env("CROSSMODAL_SHARE") == "1", help="public gradio.live link (needs internet)")
    p.add_argument("--indexes-dir", default=default_indexes, help="folder of collections (default ./indexes, /data/indexes on Spaces)")
    p.add_argument("--collection", default=env("CROSSMODAL_COLLECTION"), help="collection to open (created if missing; default: demo)")
    p.add_argument("--preset", default=env("CROSSMODAL_PRESET"), help="auto (default), clip or offline: preset of new collections")
    p.add_argument("--allow-folder-indexing", action="store_true", default=env("CROSSMODAL_ALLOW_FOLDER_INDEXING") == "1",
                   help="let the UI index folders on this machine in place")
    return p.parse_args()


def main() -> int:
    """Parse flags, open the collections (no model loads yet) and serve until interrupted."""
    from crossmodal_demo.app.ui import main as ui
    from crossmodal_demo.app.service import AppService
    from crossmodal_demo.config import load_config
    from crossmodal_demo.errors import UserError

    args = parse_args()
    try:
        service = AppService(load_config(indexes_dir=args.indexes_dir), preset=args.preset, collection=args.collection,
                             allow_folder_indexing=args.allow_folder_indexing)
        service.start(background=True)  # on first start, builds the demo collection while the app serves
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ui.build_demo(service).launch(server_name=args.host, server_port=args.port, share=args.share, **ui.launch_options(service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
