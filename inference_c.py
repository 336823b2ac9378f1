#!/usr/bin/env python3
"""Answer questions with the native C++ runtime (CUDA graphs), as demoBERT's inference_c.py.

The same options as inference.py; the engine must be a cuda engine.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    from helpers.errors import run_main
    from inference import main

    run_main(lambda: main(native=True))
