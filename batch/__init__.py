"""Batch annotation of a folder of videos: `python -m batch INPUT_DIR --out OUT_DIR` (see docs/batch.md).

A thin shell over `mer.video` / `mer.report`: argument parsing (cli), the resumable manifest
(manifest), one worker process per video with a timeout (runner)."""
