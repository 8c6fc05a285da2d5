"""Many campaigns at once: sweeps over a grid with replicates, and the calibration batteries."""
