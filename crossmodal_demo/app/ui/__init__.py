"""The Gradio UI: ``build`` (the Blocks app and its launch options), ``common`` (one wrapper for every
event, served copies, shared Markdown), and one module per tab: ``search_tab``, ``library_tab``,
``lab_tab``, ``evaluate_tab``, ``status_tab``. No search, indexing or metric logic lives here."""
