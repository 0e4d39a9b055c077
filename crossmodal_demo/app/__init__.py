"""What talks to people: the app's service (shared state, modes, per-visitor actions) and its Gradio UI.

``service`` (AppService: settings, open collections, workspaces, demo build), ``visitors`` (per-session
state), ``collections`` (bounded open collections), ``workspaces`` (public-mode private collections),
``search_actions`` / ``library_actions`` / ``lab_actions`` (what each event does), ``serving`` (files
only by item id), ``thumbnails``, ``upload_batches`` (recorded uploads, recovery), ``demo_collection``
(build and heal the demo), and ``ui/`` (one module per tab, wired to those functions).
"""
