"""The decoding that travels with every checkpoint (generate.py, copied beside the weights): it
imports nothing from warmgen, and warmgen's own decoding uses its logits processor."""
