"""From a model to an artifact.

The one exporter (``export.py``), the converters it calls, each target's pre-flight, and
`convert`/`check` (``run.py``), which prove the artifact still agrees with its source.
"""
