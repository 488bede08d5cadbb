"""Rules as data: the YAML rule files loaded and validated against their schema, the matcher that
judges an asset's subject document, and the ``rules lint|test`` commands."""
