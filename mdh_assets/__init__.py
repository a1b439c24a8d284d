"""Dagster layer of mdh: thin assets over `mdh_lib`, partitions, resources, IO managers, CLI."""

import warnings

import dagster as dg

# MultiToSingleDimensionPartitionMapping is beta; it is the documented way to map a
# date x instrument partition to its day's definitions.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
