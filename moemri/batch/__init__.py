"""Cohorts: `moemri batch` runs one method over a folder or a BIDS dataset on Dask.

    inputs.py    what to process: a folder glob or a pybids query, and where each result goes
    identity.py  what a result was made with (method, experts, options, weights) and the skip rule
    atomic.py    temporary names in the output folder and os.replace, so nothing is half-written
    worker.py    one volume on one Dask worker; a bad file returns its reason instead of raising
    engine.py    the Dask cluster (local, a running scheduler, or a jobqueue), retries, progress
    report.py    batch-report.tsv and an HTML page with before/after thumbnails
"""
