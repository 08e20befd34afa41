"""A module the demo workload reloads, so that the reload counter moves."""

VERSION = 1
