"""`make bench`: the pipeline measured side by side with the bare tools, written to BENCHMARKS.md."""
