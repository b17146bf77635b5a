"""The yearly report (``antq report``): the figures of one unit for a year or a range of years, in Vietnamese,
in the form of the movement's own reports, with the provenance an auditor needs to recompute every number.

Modules: ``unit`` (what a report is about), ``span`` (which years), ``figures`` (gathering them from the query
service or from the log), ``provenance`` (the sequence, the fold version, the seal), ``vietnamese`` (numbers,
dates, names, prose), ``document`` (the report as headings, paragraphs and tables), and one writer per format
(``markdown``, ``html``, ``pdf``, ``xlsx``, ``table_csv``).
"""
