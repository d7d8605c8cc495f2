"""Jobs built on the library: the demo, benchmarks, the experiment suite, drawings."""
