"""Run the app: ``python app.py`` serves http://127.0.0.1:7860 (see ``--help``; Hugging Face Spaces runs this file)."""

from __future__ import annotations

import argparse
import sys

from crossmodal_demo.config import apply_process_defaults, load_config
from crossmodal_demo.errors import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags win over CROSSMODAL_* environment variables (read in config.py), which win over the defaults."""
    p = argparse.ArgumentParser(description="Cross-modal search app (Gradio).")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1; $CROSSMODAL_HOST)")
    p.add_argument("--port", type=int, help="port (default 7860; $CROSSMODAL_PORT)")
    p.add_argument("--share", action="store_true", default=None, help="public gradio.live link (needs internet)")
    p.add_argument("--indexes-dir", help="folder of collections (default ./indexes; /data/indexes on Spaces with storage)")
    p.add_argument("--collection", help="collection visitors start on (created if missing; default: demo)")
    p.add_argument("--preset", help="auto (default), clip or offline: preset of new collections")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--public", dest="public", action="store_true", default=None,
                      help="public mode: read-only shared collections, private per-visitor workspaces (on by default on Spaces)")
    mode.add_argument("--no-public", dest="public", action="store_false", help="local mode even on Spaces")
    p.add_argument("--allow-folder-indexing", nargs="+", metavar="DIR", help="let the UI index folders under these roots in place (local mode only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, prepare the collections (no model loads yet) and serve until interrupted."""
    apply_process_defaults()
    args = parse_args(argv)
    try:
        config = load_config(host=args.host, port=args.port, share=args.share, indexes_dir=args.indexes_dir, collection=args.collection,
                             preset=args.preset, public=args.public, folder_roots=args.allow_folder_indexing)
        if config.preset:
            from crossmodal_demo.encoders.presets import check_preset_name  # after the flags: --help stays instant

            check_preset_name(config.preset)
        from crossmodal_demo.app.service import AppService
        from crossmodal_demo.app.ui.build import build_ui, launch_options

        service = AppService(config)
        service.announce = lambda msg: print(msg, flush=True)
        # Nothing heavy before the page is served: the demo build and the model warm-up start after launch.
        service.start(background=True, warm=True, defer=True)
        demo = build_ui(service)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo.launch(prevent_thread_lock=True, **launch_options(service))
    print(f"Serving at {demo.share_url or demo.local_url} — loading models in the background.", flush=True)
    service.run_deferred()
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
