"""jaxkit experiments: paper claims reproduced in miniature (big_vision style).

Run one with ``python -m experiments.main --config=experiments/configs/<name>.py
--workdir=DIR``; see ``experiments/README.md``.
"""
