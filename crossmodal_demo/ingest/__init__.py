"""Files → decoded media, within budgets: ``media`` (safe decoding of images, audio, text with limits),
``discover`` (folders → candidates with captions), ``uploads`` (uploaded files and zips into a collection
folder, within a budget), ``hashing`` (content hashes)."""
