"""Pure models: capacity (USL), latency, demand forecast, risk, fitting. No I/O."""
