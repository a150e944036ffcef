"""Blind side-by-side human ratings of two runs' generations (`lmexp rate`): the session folder
(session.py), the page raters use (server.py, page.html) and the report (report.py)."""
