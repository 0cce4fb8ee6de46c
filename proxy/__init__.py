"""The serving process: the hot path (`proxy.hotpath`), shadow dispatch (`proxy.shadow`),
backends, sinks and metrics. Never imports `gates/` (mlflow stays out of the proxy)."""
