#!/usr/bin/env python3
"""Build the Generative AI lab report: experiments -> figures -> LaTeX -> report.pdf -> checks.

Run `python build.py --help` for the stages and options; `make pdf` is the usual entry point.
"""

import sys

from genreport.cli import main

if __name__ == "__main__":
    sys.exit(main())
