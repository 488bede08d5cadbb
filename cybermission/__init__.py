"""cybermission: safe inventory and exposure of industrial and urban OT devices."""

__version__ = "0.1.0"
