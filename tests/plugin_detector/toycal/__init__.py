"""A toy calorimeter as a separate package: 16 photosensors in a row (a fixed-size level), hits with a graph
between them (an edge level), and one task, the energy. It registers through the `hepnb.detectors` entry point
and touches no generic file of hepnb."""
