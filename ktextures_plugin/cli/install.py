"""``python3 -m ktextures_plugin install {onnxruntime,torch} [--profile DIR | --target DIR] [--dry-run]``: the
plugin's installer (``ktextures_plugin/installer.py``) from a terminal, for administrators and for the by-hand fix
the plugin's messages give. Run it with QGIS's Python and the plugin folder on ``PYTHONPATH``."""
import argparse
import sys


def main(argv=None) -> int:
    from .. import installer
    from ..core.errors import Canceled

    p = argparse.ArgumentParser(
        prog="python3 -m ktextures_plugin install",
        description="Install a package the plugin needs into the plugin's folder of a QGIS profile (or a folder "
                    "of your choice), with the pins that keep QGIS's numpy and compiled packages unchanged. "
                    "The resolution is checked first; --dry-run stops there.")
    p.add_argument("feature", choices=sorted(installer.PACKAGES))
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", metavar="DIR",
                       help="QGIS profile folder (default: " + installer.default_profile_dir() + ")")
    where.add_argument("--target", metavar="DIR", help="install into this folder instead")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve only (no package is downloaded); exit 1 naming the conflict when it cannot install")
    args = p.parse_args(argv)
    profile = None if args.target else (args.profile or installer.default_profile_dir())
    try:
        plan = installer.install(args.feature, print, profile_dir=profile, target=args.target,
                                 dry_run=args.dry_run)
    except installer.InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (Canceled, KeyboardInterrupt):
        print("canceled", file=sys.stderr)
        return 130
    if args.dry_run:
        print(f"OK: {args.feature} can be installed into {plan.target}")
    else:
        print(f"OK: {args.feature} installed in {plan.target}")
    return 0
