"""QGIS Processing algorithms: parameters in, core calls, outputs out."""
