"""An lmexp plug-in package of its own: a model, a data source, an objective and a callback that
live outside lmexp and rely only on its documented contracts (README "Your own model, data and
objective"). Its configs are in ../conf, added with `hydra.searchpath=[file://.../conf]`.

broken.py holds deliberately wrong plug-ins, for the errors they get.
"""
