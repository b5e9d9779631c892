"""The build stage: config, the plan of artifacts, the kinds registry, compute, the dataset scan,
the run and the export."""
