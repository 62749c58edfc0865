"""Licence rules: what a teacher's, a starting checkpoint's or a dataset's licence obliges a distilled student to
carry, and `check_license`, which turns them into one verdict. Engineering defaults, not legal advice."""

from .check import Duties, LicenseConflictError, LicenseReason, LicenseVerdict, check_license
from .rules import HUB_LICENSE_IDS, LICENSE_RULES, NON_COMMERCIAL_LICENSES, LicenseRule, Terms, normalize_license

__all__ = [
    "HUB_LICENSE_IDS",
    "LICENSE_RULES",
    "NON_COMMERCIAL_LICENSES",
    "Duties",
    "LicenseConflictError",
    "LicenseReason",
    "LicenseRule",
    "LicenseVerdict",
    "Terms",
    "check_license",
    "normalize_license",
]
