"""``models`` and ``download`` subcommands: what each preset uses, whether its weights are here, and fetching them."""

from __future__ import annotations

import argparse
from typing import Any

from crossmodal_demo.cli.output import print_json
from crossmodal_demo.config import Config
from crossmodal_demo.encoders.catalog import describe_preset
from crossmodal_demo.encoders.presets import DESCRIPTIONS, download, resolve_preset
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import DEFAULT_PRESET


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``models`` and ``download`` on the CLI's subparsers."""
    mo = sub.add_parser("models", parents=[common], help="presets, encoders, spaces, dims, weights present, published quality")
    mo.add_argument("--json", action="store_true", help="print as JSON")
    mo.set_defaults(func=cmd_models)
    dl = sub.add_parser("download", parents=[common], help="prefetch a preset's weights into the Hugging Face cache")
    dl.add_argument("--preset", default="clip", help="preset whose weights to fetch (default: clip)")
    dl.set_defaults(func=cmd_download)


def models_report(config: Config) -> dict[str, Any]:
    """Every preset (auto, clip, offline) with its encoders; auto shows what it resolves to here and why."""
    chosen, reason = resolve_preset("auto", config)
    presets: list[dict[str, Any]] = []
    for name in ("clip", "offline"):
        try:
            presets.append(describe_preset(name, config))
        except UserError as exc:  # a misconfigured CROSSMODAL_CLIP_* shows up here instead of failing the listing
            presets.append({"name": name, "error": str(exc), "encoders": [], "weights_available": False})
    auto = {"name": "auto", "description": DESCRIPTIONS["auto"],
            "resolves_to": chosen, "reason": reason, "encoders": next(p["encoders"] for p in presets if p["name"] == chosen)}
    return {"default": DEFAULT_PRESET, "presets": [auto, *presets]}


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    """``models``: a table (or JSON) of presets and encoders; loads no model."""
    report = models_report(config)
    if args.json:
        print_json(report)
        return 0
    for p in report["presets"]:
        default = " (default)" if p["name"] == report["default"] else ""
        if p["name"] == "auto":
            print(f"auto{default} → {p['resolves_to']}: {p['reason']}\n")
            continue
        here = "weights present" if p.get("weights_available") else "weights missing"
        print(f"{p['name']}: {p.get('description') or p.get('error')} [{here}]")
        for e in p["encoders"]:
            mark = "yes" if e["weights_available"] else "NO "
            print(f"  {e['name']:<27} {e['modality']:<5} → {e['space']:<5} {e['dim']:>4}-d  weights {mark}  {e['model_id']}")
            for n in e["published"]:
                print(f"      {n['benchmark']}: {n['value']}  ({n['source']})")
        print()
    return 0


def cmd_download(args: argparse.Namespace, config: Config) -> int:
    """``download``: fetch the preset's hub weights into the Hugging Face cache (HF_HOME)."""
    if args.preset == "offline":
        print("preset offline: weights ship inside pip packages; nothing to download.")
        return 0
    paths = download(args.preset, config)
    for p in paths:
        print(p)
    print(f"{len(paths)} file(s) ready in the Hugging Face cache; copy it (HF_HOME) to use them on an offline machine.")
    return 0
