"""Experiment 1's experiments (one module each: data, model, training loop, metrics, `run(config) -> Results`),
their shared data loaders (data.py) and the plot functions that draw the report's figures from their
results (plots.py). The engine finds them here: see genreport/experiments/__init__.py and genreport/plotkit.py.
"""
