"""The five built-in gates, the insufficient-evidence checks and the plugin interface."""
