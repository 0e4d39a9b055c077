"""app/ui."""
