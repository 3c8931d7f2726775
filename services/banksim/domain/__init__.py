"""Pure rules of the simulated banks: configuration, outcomes, statements. No I/O."""
