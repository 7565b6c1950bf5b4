"""Sub-commands of ``python -m ktextures_plugin``; each module has ``main(argv) -> int``."""
