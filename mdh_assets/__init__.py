"""Dagster layer of mdh: thin assets over `mdh_lib`, partitions, resources, IO managers, CLI.

Importing the package imports no Dagster, so `mdh streaming-*` starts in a fraction of a
second; the modules that define assets import it themselves.
"""
