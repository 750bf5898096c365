"""Build pipeline for the Generative AI lab report: experiments -> figures -> LaTeX -> PDF -> checks."""
