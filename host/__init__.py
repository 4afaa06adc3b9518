"""tinyear's workstation half: data, synthetic speech, teachers, students, distillation, int8 export,
evaluation, the one-command pipeline and deploy. It needs the `host` extra (torch, litert-torch) and
builds on `tinyear.device` for features and bundles, never the other way round.
"""
