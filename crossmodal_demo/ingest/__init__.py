"""Files → decoded media, within budgets: ``files`` (types, sniffing, size checks), ``media`` (safe
decoding of images and text, the pipeline's ``decode_media`` / ``estimate_decoded_bytes``), ``audio``
(header checks, block-wise decoding), ``discover`` (folders → candidates with captions), ``uploads``
(uploaded files and zips into a collection folder, within a budget), ``hashing`` (content hashes)."""
