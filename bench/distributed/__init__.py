"""Running a matrix on a Ray cluster: one Ray task per variant, records streamed back to the driver."""
