"""alerter — warns before a collateral call turns into a forced liquidation."""

__version__ = "0.1.0"
