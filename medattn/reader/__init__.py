"""Reader-study logic: case order, blinding, arms, progress, agreement, analysis and exports.

The database is `medattn.store.annotations.AnnotationStore`; this package holds the rules it
applies and the analyses and exports built on it. No Streamlit here.
"""
