"""shadowlane: shadow / champion-challenger serving with gated promotion.

This package holds what the serving process and the offline gates share: the shadow-record
format (`shadowlane.record`), the local segment files (`shadowlane.segments`) and the CLI.
"""

__version__ = "0.1.0"
