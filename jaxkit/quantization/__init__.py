"""Weight/activation quantization (formats, PTQ, QAT, low-rank + quant). Filled by a later issue."""
