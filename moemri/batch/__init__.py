"""Cohorts: `moemri batch` runs one method over a folder or a BIDS dataset on Dask.

    cohort.py    run_cohort(): the whole batch as one call (the CLI's and a notebook's entry)
    inputs.py    what to process: a folder glob or a pybids query, and where each result goes
    identity.py  what a result was made with (method, experts, options, weights) and the skip rule
    worker.py    one volume on one Dask worker; a bad file returns its reason instead of raising
    engine.py    the Dask cluster (local, a running scheduler, or a jobqueue), retries, progress
    atomic.py    temporary names in the output folder and os.replace, so nothing is half-written
    dataset.py   the BIDS derivative's dataset_description.json, .bidsignore and a naming check
    report.py    batch-report.tsv and an HTML page with before/after thumbnails and expert maps
"""
