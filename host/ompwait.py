"""Kept for the modules that still import it by hand (teachers, kd, distill): OMP_WAIT_POLICY is now set
once, by `tinyear/host/__init__.py`, before any host module can load torch. Remove with those imports.
"""
